"""`KEY=VALUE` config overrides for scripts (rr1_jax/config_overrides.py)."""
import argparse

import ml_collections
import pytest

from rr1_jax.config_overrides import apply_overrides, parse_override


def test_overrides_parse_literals_and_keep_other_text_as_strings():
    assert parse_override("ppo.kl_loss_coef=0.1") == ("ppo.kl_loss_coef", 0.1)
    assert parse_override("rollout.response_buckets=(256, 512)") == ("rollout.response_buckets", (256, 512))
    assert parse_override("model.path=/tmp/a=b") == ("model.path", "/tmp/a=b")
    for bad in ("ppo.kl_loss_coef", "=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
            parse_override(bad)


def test_overrides_apply_in_order_and_name_a_missing_key():
    config = ml_collections.ConfigDict(dict(seed=0, ppo=dict(kl_loss_coef=0.001, clip_ratio=0.2)))
    apply_overrides(config, [("ppo.kl_loss_coef", 0.1), ("seed", 3), ("seed", 7)])
    assert config.ppo.kl_loss_coef == 0.1 and config.seed == 7 and config.ppo.clip_ratio == 0.2
    for key in ("ppo.kl_los_coef", "ppo.kl_loss_coef.x", "optim.lr"):
        with pytest.raises(KeyError, match=f"{key!r} does not exist in configs/x.py"):
            apply_overrides(config, [(key, 1.0)], where="configs/x.py")
    with pytest.raises(TypeError):  # ml_collections keeps a field's type
        apply_overrides(config, [("ppo.kl_loss_coef", "high")])
