"""Typed, validated configuration: ``load_config(path, overrides)`` -> one object per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from aurora_rl.config.loader import ConfigError, apply_override, build, dump_yaml, load_tree
from aurora_rl.config.replaced_keys import REPLACED_KEYS
from aurora_rl.config.schema import STAGES, EvalConfig, GRPOConfig, ReflectConfig, SFTConfig

__all__ = [
    "ConfigError", "load_config", "dump_yaml", "STAGES",
    "SFTConfig", "ReflectConfig", "GRPOConfig", "EvalConfig",
]


def load_config(path: str | Path, overrides: Iterable[str] = (), expect: str | None = None):
    """Load a stage config file, apply ``key.sub=value`` overrides, validate, return the object.

    ``expect`` names the stage the caller needs ("sft", "grpo", ...); a file of another stage
    is an error that says so.
    """
    origins: dict[str, str] = {}
    tree = load_tree(path, origins)
    for text in overrides:
        tree = apply_override(tree, text, origins)
    stage = tree.get("stage")
    if stage is None:
        raise ConfigError(f"{path}: stage: missing required value (one of {', '.join(STAGES)})")
    if stage not in STAGES:
        source = origins.get("stage", str(path))
        raise ConfigError(f"{source}: stage: expected one of {', '.join(STAGES)}, got {stage!r}")
    if expect is not None and stage != expect:
        raise ConfigError(f"{path}: stage: this command needs a {expect!r} config, the file is {stage!r}")
    return build(STAGES[stage], tree, origins, str(path), REPLACED_KEYS[stage])
