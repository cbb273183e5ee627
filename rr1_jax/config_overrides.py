"""`KEY=VALUE` overrides of an ml_collections config for scripts that are not absl apps (benchmarks, test workers).

`launch/train.py` takes `--config.a.b=v` through `ml_collections.config_flags`; these helpers give other command
lines the same dotted keys, with a value read as a Python literal (anything else stays a string).
"""
from __future__ import annotations

import argparse
import ast
from typing import Iterable


def parse_override(text: str) -> tuple[str, object]:
    """`KEY=VALUE` -> (dotted key, value): a Python literal, else the string itself (e.g. a path)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: write KEY=VALUE, e.g. --set ppo.kl_loss_coef=0.1")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def apply_overrides(config, pairs: Iterable[tuple[str, object]], where: str = "the config") -> None:
    """Set each dotted key of `pairs` in `config`, in order; a key that does not exist raises KeyError naming it."""
    for key, value in pairs:
        node = config
        *path, last = key.split(".")
        for part in path:
            node = node.get(part) if hasattr(node, "get") else None
        if not hasattr(node, "get") or last not in node:
            raise KeyError(f"config key {key!r} does not exist in {where} (see configs/base.py)")
        node[last] = value
