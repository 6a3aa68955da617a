"""The eval config: the run's common settings plus every suite's options, as one flat set of keys (YAML files,
`key=value` overrides and CLI flags all use them). Torch-free, so that the CLI can build its flags from it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from longrecipe.base import config as C
from longrecipe.base.config import ConfigError, bounded
from longrecipe.tasks.base import Task, option_fields
from longrecipe.tasks.suites import REGISTRY

DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class EvalConfig:
    """The run's common settings; `options` holds the suites' own keys (flat: `niah_depths`, `qa_squad`, ...)."""

    model: str
    out: str
    suites: tuple[str, ...] = ("ruler",)
    lengths: tuple[int, ...] = (256,)
    backend: str = "hf"
    allow_extrapolation: bool = False
    samples: int = bounded(20, ge=1)
    seed: int = bounded(42, ge=0)
    batch_size: int = bounded(8, ge=1)
    chat_template: bool = False
    max_model_len: int | None = bounded(None, ge=1)
    device: str | None = None
    # model options: hf (dtype, attention kernel, layers spread over GPUs) and vLLM (tensor parallel, memory)
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    device_map: str | None = None
    trust_remote_code: bool = False
    tensor_parallel_size: int = bounded(1, ge=1)
    # N engines (vLLM) or models (hf), each on its own GPUs (tensor_parallel_size each) or CPU threads, predicting
    # disjoint shards of every job; their predictions merge into one tree (evaluate/runner.py)
    data_parallel_size: int = bounded(1, ge=1)
    gpu_memory_utilization: float = bounded(0.85, gt=0, le=1)
    # --backend openai: the endpoint, the served model's tokenizer (a local directory), request handling
    base_url: str | None = None
    tokenizer: str | None = None
    api_key_env: str | None = None  # the NAME of the environment variable holding the key, never the key
    concurrency: int = bounded(8, ge=1)
    request_timeout: float = bounded(600.0, gt=0)
    retries: int = bounded(5, ge=0)
    options: dict[str, Any] = field(default_factory=dict)


COMMON = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name != "options")
# Common settings that may grow between two runs into one --out (results then hold the union), and common settings
# that change no sample and no score; a suite's options say the same of themselves (option(additive=, neutral=)).
ADDITIVE = ("suites", "lengths")
NEUTRAL = ("out", "batch_size", "device", "max_model_len", "allow_extrapolation", "base_url", "api_key_env",
           "concurrency", "request_timeout", "retries", "attn_implementation", "device_map", "tensor_parallel_size",
           "gpu_memory_utilization", "data_parallel_size")


def option_owners() -> dict[str, tuple[Task, dataclasses.Field]]:
    """Every suite option's config key -> (the first suite that declares it, its field)."""
    out: dict[str, tuple[Task, dataclasses.Field]] = {}
    for task in REGISTRY.values():
        for key, f in option_fields(task):
            out.setdefault(key, (task, f))
    return out


def option_keys() -> dict[str, dataclasses.Field]:
    """Every suite option's config key (a key shared by several suites appears once)."""
    return {key: f for key, (_, f) in option_owners().items()}


def build_config(data: dict[str, Any]) -> EvalConfig:
    """Flat keys (a YAML file, overrides, flags) -> EvalConfig; an unknown key names the closest valid one and
    every suite's options are validated (types, ranges) whether or not the suite runs."""
    opts = option_keys()
    valid = list(COMMON) + [k for k in opts if k not in COMMON]
    common = {k: v for k, v in data.items() if k in COMMON}
    for key in data:
        if key not in COMMON and key not in opts:
            raise ConfigError(f"unknown config key '{key}'{C._closest(str(key), valid)}")
    missing = [k for k in ("model", "out") if common.get(k) is None]
    if missing:
        raise ConfigError(f"the eval config needs '{missing[0]}'")
    cfg = C.build(EvalConfig, common)
    given = {k: v for k, v in data.items() if k in opts and k not in COMMON}
    cfg = dataclasses.replace(cfg, options=given)
    resolved = {}
    for task in REGISTRY.values():
        inst = suite_options(cfg, task)
        resolved.update({key: getattr(inst, f.name) for key, f in option_fields(task) if key in given})
    return dataclasses.replace(cfg, options=resolved)


def suite_options(cfg: EvalConfig, task: Task) -> Any:
    """The suite's options dataclass from the config (its defaults where the config says nothing; keys that are
    common settings, such as chat_template, read from those). A bad value is one line naming its config key."""
    hints = typing.get_type_hints(task.Options)
    values = {}
    for key, f in option_fields(task):
        if key in COMMON or key in cfg.options:
            value = C._coerce(getattr(cfg, key) if key in COMMON else cfg.options[key], hints[f.name], key)
            C._check_range(value, f.metadata, key)
            values[f.name] = value
    return task.Options(**values)


def flat(cfg: EvalConfig) -> dict[str, Any]:
    """The resolved config as one flat mapping (what eval_config.json holds): common settings, then every
    suite option with its value or default."""
    out = {k: v for k, v in asdict(cfg).items() if k != "options"}
    for task in REGISTRY.values():
        inst = suite_options(cfg, task)
        for key, f in option_fields(task):
            out.setdefault(key, getattr(inst, f.name))
    return json.loads(json.dumps(out))
