"""The eval config: the run's common settings plus every suite's options, as one flat set of keys (YAML files,
`key=value` overrides and CLI flags all use them). Torch-free, so that the CLI can build its flags from it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from longrecipe.base import config as C
from longrecipe.base import models
from longrecipe.base.config import ConfigError, bounded, check
from longrecipe.evaluate import thinking
from longrecipe.evaluate.backends import BACKENDS
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
    # a reasoning model: its thought (between the markers of --think START,END, or 'on': <think>,</think>) is cut
    # off before scoring and has think_tokens of its own on top of each answer budget (evaluate/thinking.py)
    think: str | None = None
    think_tokens: int = bounded(1024, ge=1)
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
    # a job whose share of empty answers exceeds this stops (the empties are not kept): an endpoint that answers
    # nothing past its RoPE window must not score as a model that answers wrongly; 1.0 scores them as nulls
    empty_limit: float = bounded(0.5, ge=0, le=1)
    options: dict[str, Any] = field(default_factory=dict)


COMMON = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name != "options")
# Common settings that may grow between two runs into one --out (results then hold the union), and common settings
# that change no sample and no score; a suite's options say the same of themselves (option(additive=, neutral=)).
ADDITIVE = ("suites", "lengths")
NEUTRAL = ("out", "batch_size", "device", "max_model_len", "allow_extrapolation", "base_url", "api_key_env",
           "concurrency", "request_timeout", "retries", "attn_implementation", "device_map", "tensor_parallel_size",
           "gpu_memory_utilization", "data_parallel_size", "empty_limit")


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


def check_input(cfg: EvalConfig) -> tuple[Path, int]:
    """Refuse bad input in one line (unknown key, backend or dtype, a missing model, a length above the window, a
    bad suite option) without importing torch or transformers: the CLI runs it first, so a typo costs a fraction
    of a second rather than the ~5 s those imports take. Returns the model (or tokenizer) folder and its window;
    the runner adds the model tasks' own checks."""
    check(cfg)
    thinking.check_config(cfg)
    if not cfg.suites or not cfg.lengths:
        raise ConfigError("give at least one suite and one length")
    if min(cfg.lengths) < 1:
        raise ConfigError(f"lengths must be positive, got {list(cfg.lengths)}")
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; choose from {', '.join(BACKENDS)}")
    unknown = [k for k in cfg.options if k not in option_keys()]
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'")
    local = BACKENDS[cfg.backend].local_model
    if not local and (not cfg.base_url or not cfg.tokenizer):
        raise ConfigError(f"--backend {cfg.backend} needs --base-url (e.g. http://127.0.0.1:8000/v1) and "
                          f"--tokenizer DIR (the served model's tokenizer, to build and fit prompts); --model is "
                          f"the served name")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {cfg.dtype!r}; choose from {', '.join(DTYPES)}")
    _check_parallel(cfg)
    path = models.resolve(cfg.model if local else cfg.tokenizer)
    for suite in cfg.suites:
        if suite not in REGISTRY:
            raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(REGISTRY)}")
    window = int(json.loads((path / "config.json").read_text()).get("max_position_embeddings", 0))
    too_long = [n for n in cfg.lengths if n > window]
    if too_long and not cfg.allow_extrapolation:
        raise ValueError(f"length {max(too_long)} is above the model's max_position_embeddings ({window}); pass "
                         f"--allow-extrapolation to measure beyond the window")
    for name, task in REGISTRY.items():
        if name in cfg.suites:
            task.check(suite_options(cfg, task))
    return path, window


def _gpu_count() -> int:
    import torch  # only when a parallel run is asked for: the other checks stay torch-free

    return torch.cuda.device_count()


def _check_parallel(cfg: EvalConfig) -> None:
    if cfg.tensor_parallel_size > 1:
        gpus = _gpu_count()
        if cfg.backend != "vllm" or cfg.tensor_parallel_size > gpus:
            raise ConfigError(f"--tensor-parallel-size {cfg.tensor_parallel_size} needs --backend vllm and as many "
                              f"GPUs ({gpus} visible)")
    if cfg.data_parallel_size > 1:
        if not BACKENDS[cfg.backend].local_model:
            raise ConfigError(f"--data-parallel-size runs local engines; --backend {cfg.backend} sends requests to a "
                              f"server (use --concurrency, and the server's own data parallelism)")
        gpus = _gpu_count()
        need = cfg.data_parallel_size * cfg.tensor_parallel_size
        if gpus and need > gpus:
            raise ConfigError(f"--data-parallel-size {cfg.data_parallel_size} x --tensor-parallel-size "
                              f"{cfg.tensor_parallel_size} needs {need} GPUs ({gpus} visible)")
