"""Configs: a YAML file plus `key.sub=value` overrides, validated into frozen dataclasses.

Why frozen dataclasses: a run's config is resolved once, saved next to its outputs, and can no longer change
under the code; an unknown key is an error that names the closest valid key, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from longrecipe.base.io import write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, reported as one line."""


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose value must lie in a range: checked where configs are built (`build`, `check`), so
    a bad number is one line naming the key instead of a ZeroDivisionError (or a silent nonsense run) later."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


def option(default: Any, help: str = "", key: str | None = None, data: bool = False, additive: bool = False,
           neutral: bool = False, env: str | None = None, flag: str | None = None, **bounds: float) -> Any:
    """A field of a settings dataclass that is also a config key and a CLI flag (a suite's, a backend's or the eval
    run's own options; the flag is generated from it): `key` is its config key (default: the owner's rule, e.g.
    `<suite>_<field>`); `data`: a file or folder whose content is part of the run's identity; `additive`: may grow
    between runs into one --out; `neutral`: changes no sample and no score; `env`: the environment variable that gives
    its flag a default; `flag`: the flag's name where it is not the key's (`--suite` for `suites`); bounds as in
    `bounded`. Why one machinery: a setting is declared once, with its default, range and help, and every flag,
    config key, validation and identity rule is read from that declaration."""
    meta = {"help": help, "key": key, "data": data, "additive": additive, "neutral": neutral, "env": env,
            "flag": flag, **bounds}
    return field(default=default, metadata=meta)


def _check_range(value: Any, meta: Any, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    if ge is not None and value < ge:
        raise ConfigError(f"{where}: {value!r} must be >= {ge}")
    if gt is not None and value <= gt:
        raise ConfigError(f"{where}: {value!r} must be > {gt}")
    if le is not None and value > le:
        raise ConfigError(f"{where}: {value!r} must be <= {le}")


def check(cfg: Any, prefix: str = "") -> Any:
    """Check the ranges of every `bounded` field of a dataclass instance (nested ones too); returns `cfg`."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
        else:
            _check_range(value, f.metadata, f"{prefix}{f.name}")
    return cfg


def _closest(key: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f"; did you mean {match[0]!r}?" if match else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one value to the annotated type (int->float allowed; str -> tuple for comma lists)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (tuple, list):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):  # "a,b" or "256,512" (an override): each piece read as YAML unless a str list
            value = [v.strip() if item is str else _scalar(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build(tp, value, prefix=f"{where}.")
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Validate a nested dict into dataclass `cls`; unknown keys name the closest valid key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_closest(str(key), list(fields))}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
        _check_range(kwargs[key], fields[key].metadata, f"{prefix}{key}")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=value' -> (['a', 'b'], value parsed as YAML so numbers, bools and lists get their types)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [k for k in key.strip().split(".") if k], value


def merge_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    out = _deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        if not keys:
            raise ConfigError(f"override {text!r} names no key")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    return {k: _deepcopy(v) for k, v in d.items()} if isinstance(d, dict) else d


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or bad YAML is a ConfigError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{line}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """YAML file (optional) + overrides -> validated frozen dataclass."""
    data = read_yaml(path) if path else {}
    return build(cls, merge_overrides(data, overrides))


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain data (tuples become lists) for saving next to a run's outputs."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def save(cfg: Any, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
