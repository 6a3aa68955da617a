"""One rule for "is this the same run?": training (`train/recipe.py`), evaluation (`evaluate/runner.py`) and the
demo (`recipes/demo.py`) each compare what a run folder recorded with what the command asks now, and resume only
when nothing that moves a result differs.

Why one helper: three hand-written comparisons drifted (one compared whole nested configs and could not say what
differed, one named keys by hand, one filled defaults for keys added later). Here values are compared as they are
saved (JSON: tuples are lists), nested mappings key by key (`train.lr`), a key the saved record lacks counts as its
default when one is given (a run written before the key existed still resumes), and the differing keys are named,
so that a refusal says which setting to change back.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

_MISSING = object()


def plain(value: Any) -> Any:
    """A value as its saved JSON reads back (tuples as lists, paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def changed(saved: Mapping[str, Any], now: Mapping[str, Any], *, ignore: Collection[str] = (),
            defaults: Mapping[str, Any] | None = None, both_only: bool = False) -> list[str]:
    """The keys (dotted for nested mappings, sorted) whose values differ between a run's saved settings and this
    run's. `ignore`: keys (or top-level sections) that may change between two runs of one folder; `defaults`: the
    value of a key one side lacks; `both_only`: compare only keys both sides have (a suite one run did not use)."""
    a, b = _flatten(plain(dict(saved))), _flatten(plain(dict(now)))
    fill = _flatten(plain(dict(defaults or {})))
    keys = set(a) & set(b) if both_only else set(a) | set(b)
    out = []
    for key in sorted(keys):
        if key in ignore or key.split(".")[0] in ignore:
            continue
        if a.get(key, fill.get(key, _MISSING)) != b.get(key, fill.get(key, _MISSING)):
            out.append(key)
    return out
