"""YAML -> typed, validated config objects.

A config file is a YAML mapping. It may name a parent with ``inherit: other.yaml`` (a path
relative to the file); the parent is loaded first and the child's keys are merged over it,
mapping by mapping. Command-line overrides ``key.sub=value`` are merged last; their values
are parsed as YAML scalars (``3``, ``0.5``, ``true``, ``null``, ``[a, b]``).

Every leaf remembers where it came from (a file or an override), so an error names the place
a user has to edit: ``configs/grpo_tiny.yaml: rollout.temprature: unknown key (did you mean
'temperature'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override is invalid. The message names the file (or override) and key."""


def field(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, factory=None):
    """A dataclass field with optional numeric bounds checked at load time."""
    metadata = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict, top: dict, origins: dict, source: str, prefix: str = "") -> dict:
    """Merge ``top`` over ``base`` (nested mappings merge; anything else replaces)."""
    out = dict(base)
    for key, value in top.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, source, path + ".")
        else:
            out[key] = value
            for stale in [p for p in origins if p.startswith(path + ".")]:
                del origins[stale]
            origins[path] = source
            if isinstance(value, dict):
                _record_origins(value, origins, source, path + ".")
    return out


def _record_origins(tree: dict, origins: dict, source: str, prefix: str) -> None:
    for key, value in tree.items():
        origins[f"{prefix}{key}"] = source
        if isinstance(value, dict):
            _record_origins(value, origins, source, f"{prefix}{key}.")


def load_tree(path: str | Path, origins: dict | None = None, _seen: tuple = ()) -> dict:
    """Read a config file with its ``inherit`` chain into one plain dict."""
    path = Path(path)
    origins = {} if origins is None else origins
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: inherit: circular chain {chain}")
    data = read_yaml(path)
    parent = data.pop("inherit", None)
    base: dict = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: inherit: expected a file path, got {parent!r}")
        base = load_tree(path.parent / parent, origins, (*_seen, resolved))
    return _merge(base, data, origins, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: malformed key {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from None
    return parts, parsed


def apply_override(tree: dict, text: str, origins: dict) -> dict:
    parts, value = parse_override(text)
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _merge(tree, nested, origins, f"override {text!r}")


# --------------------------------------------------------------------------- typed building


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


class _Builder:
    def __init__(self, origins: dict, default_source: str, replaced: dict[str, str] | None = None):
        self.origins = origins
        self.default_source = default_source
        self.replaced = replaced or {}

    def where(self, path: str) -> str:
        probe = path
        while probe:
            if probe in self.origins:
                return self.origins[probe]
            probe = probe.rpartition(".")[0]
        return self.default_source

    def fail(self, path: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.where(path)}: {path or '<top>'}: {message}")

    def build(self, tp: Any, value: Any, path: str) -> Any:
        origin = get_origin(tp)
        if dataclasses.is_dataclass(tp):
            return self.build_dataclass(tp, value, path)
        if origin in (Union, types.UnionType):
            args = get_args(tp)
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.build(arg, value, path)
                except ConfigError as e:
                    errors.append(e)
            if len(errors) == 1:
                raise errors[0]
            self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is Literal:
            if value not in get_args(tp):
                self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
            return value
        if origin is list:
            if not isinstance(value, list):
                self.fail(path, f"expected a list, got {value!r}")
            (item,) = get_args(tp)
            return [self.build(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(path, f"expected a mapping, got {value!r}")
            _, item = get_args(tp)
            return {str(k): self.build(item, v, f"{path}.{k}") for k, v in value.items()}
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(path, f"expected true or false, got {value!r}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(path, f"expected an integer, got {value!r}")
            return value
        if tp is float:
            # YAML 1.1 reads "3e-4" (no dot in the mantissa) as a string; take it as the number it is.
            if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, f"expected a number, got {value!r}")
            # YAML reads .nan and .inf (and "1e999" overflows): no weight, threshold or timeout means either
            if not math.isfinite(value):
                self.fail(path, f"expected a finite number, got {value!r}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                self.fail(path, f"expected a string, got {value!r}")
            return value
        if tp is Any:
            return value
        raise TypeError(f"config schema uses unsupported type {tp!r} at {path}")

    def build_dataclass(self, cls: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {value!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in fields and f"{prefix}{key}" in self.replaced:
                self.fail(f"{prefix}{key}", self.replaced[f"{prefix}{key}"])
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"{prefix}{key}", f"unknown key{hint}; known keys: {', '.join(fields)}")
        kwargs = {}
        for name, f in fields.items():
            key_path = f"{prefix}{name}"
            if name in value:
                kwargs[name] = self.build(hints[name], value[name], key_path)
                self.check_bounds(f, kwargs[name], key_path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    kwargs[name] = self.build_dataclass(hints[name], {}, key_path)
                else:
                    self.fail(key_path, f"missing required value ({_type_name(hints[name])})")
        obj = cls(**kwargs)
        check = getattr(obj, "check", None)
        if check is not None:
            for key, message in check():
                self.fail(f"{prefix}{key}", message)
        return obj

    def check_bounds(self, f: dataclasses.Field, value: Any, path: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        m = f.metadata
        if "ge" in m and not value >= m["ge"]:
            self.fail(path, f"must be >= {m['ge']}, got {value!r}")
        if "gt" in m and not value > m["gt"]:
            self.fail(path, f"must be > {m['gt']}, got {value!r}")
        if "le" in m and not value <= m["le"]:
            self.fail(path, f"must be <= {m['le']}, got {value!r}")
        if "lt" in m and not value < m["lt"]:
            self.fail(path, f"must be < {m['lt']}, got {value!r}")


def build(cls: type, tree: dict, origins: dict, source: str, replaced: dict[str, str] | None = None) -> Any:
    """Turn a plain dict into ``cls`` (a dataclass), validating every key and type.

    ``replaced`` maps a key that no longer exists (its path from the top) to what replaces it;
    such a key fails with that message instead of "unknown key".
    """
    return _Builder(origins, source, replaced).build_dataclass(cls, tree, "")


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=False)
