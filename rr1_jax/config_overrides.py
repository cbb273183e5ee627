"""`KEY=VALUE` overrides of an ml_collections config for scripts that are not absl apps (benchmarks, test workers).

`launch/train.py` takes `--config.a.b=v` through `ml_collections.config_flags`; these helpers give other command
lines the same dotted keys, with a value read as a Python literal (anything else stays a string), and check the
launchers' `--config.*` keys before absl applies them (`check_config_flags`), so a misspelled key is one line
naming the valid ones, not a traceback.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from typing import Iterable, Optional, Sequence


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
        missing = missing_key(config, key)
        if missing:
            raise KeyError(f"config key {key!r} does not exist in {where}: {missing} (see configs/base.py)")
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[last] = value


def missing_key(config, key: str) -> Optional[str]:
    """None if the dotted `key` exists in `config`, else where it goes astray and the valid keys there."""
    node, walked = config, []
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            where = ".".join(walked) or "the config"
            if not hasattr(node, "keys"):
                return f"{where} is a value, not a section"
            return f"{where} has {sorted(node.keys())}"
        node, walked = node[part], walked + [part]
    return None


def check_config_flags(argv: Sequence[str], default_config: str, flag: str = "config") -> None:
    """Exit with one clear line when a `--<flag>.a.b=v` key of `argv` is not in the config file it names."""
    path, keys = default_config, []
    for i, arg in enumerate(argv[1:], start=1):
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == flag:
            path = value if eq else (argv[i + 1] if i + 1 < len(argv) else path)  # --config=F or --config F
        elif arg.startswith("-") and name.startswith(flag + "."):
            keys.append(name[len(flag) + 1:])
    if not keys or not os.path.isfile(path):  # absl reports a missing file itself
        return
    spec = importlib.util.spec_from_file_location("_checked_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key in keys:
        missing = missing_key(config, key)
        if missing:
            raise SystemExit(f"error: --{flag}.{key}: config key {key!r} does not exist: {missing} "
                             f"(configs/base.py documents every key)")
