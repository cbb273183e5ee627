"""`KEY=VALUE` config overrides for scripts (rr1_jax/config_overrides.py)."""
import argparse

import ml_collections
import pytest

from rr1_jax.config_overrides import apply_overrides, check_config_flags, parse_override


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


def test_launcher_config_keys_are_checked_before_absl(tmp_path):
    """`--config.*` keys of the config file the command line names (or the default): a misspelled one is one line
    naming its section's keys; good keys, values and the other flags pass untouched."""
    config = tmp_path / "c.py"
    config.write_text("import ml_collections\n\ndef get_config():\n"
                      "    return ml_collections.ConfigDict({'train': {'total_steps': 1, 'val_every': 0}})\n")
    good = ["train.py", f"--config={config}", "--config.train.total_steps=3", "--config.train.val_every", "2",
            "--workdir=/tmp/x"]
    check_config_flags(good, "absent_default.py")
    check_config_flags(["train.py", "--config", str(config), "--config.train.val_every=1"], "absent_default.py")
    with pytest.raises(SystemExit, match=r"--config.train.total_step: .* train has \['total_steps', 'val_every'\]"):
        check_config_flags(["train.py", "--config.train.total_step=3"], str(config))
    with pytest.raises(SystemExit, match="train.total_steps is a value, not a section"):
        check_config_flags(["train.py", "--config", str(config), "--config.train.total_steps.x=1"], "absent.py")
