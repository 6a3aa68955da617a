"""The eval config: the run's common settings plus every suite's options, as one flat set of keys (YAML files,
`key=value` overrides and CLI flags all use them). Torch-free, so that the CLI can build its flags from it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from longrecipe.base import config as C
from longrecipe.base import model_dirs
from longrecipe.base.config import ConfigError, check, option
from longrecipe.evaluate import thinking
from longrecipe.evaluate.backends import BACKENDS, backend_option_fields, visible_gpus
from longrecipe.tasks.base import Task, option_fields
from longrecipe.tasks.suites import REGISTRY


@dataclass(frozen=True)
class EvalConfig:
    """The run's own settings (every backend and suite reads them); `options` holds the suites' and the backends'
    keys (flat: `niah_depths`, `qa_squad`, `dtype`, `base_url`, ...), each declared by its owner's options dataclass.
    Every field is a config key and a CLI flag (generated from this declaration: `longrecipe/recipes/cli.py`)."""

    model: str | None = option(None, "model directory, 'tiny' or 'tiny-v2', a pulled name (smollm2-135m), a hub id "
                               "org/name[@revision], or the served model name with --backend openai")
    out: str | None = option(None, "run directory (re-running the same command resumes)", neutral=True)
    suites: tuple[str, ...] = option(("ruler",), "comma list of suites", additive=True, flag="--suite")
    lengths: tuple[int, ...] = option((256,), "comma list of context lengths", additive=True)
    backend: str = option("hf", "the inference backend")
    allow_extrapolation: bool = option(False, "allow lengths above max_position_embeddings", neutral=True)
    samples: int = option(20, "samples per task and length", ge=1)
    seed: int = option(42, "seed of the samples", ge=0)
    batch_size: int = option(8, "prompts per batch of a local engine", neutral=True, ge=1)
    chat_template: bool = option(False, "apply the tokenizer's chat template (RULER, NIAH, passkey, LongBench)")
    # a reasoning model: its thought (between the markers of --think START,END, or 'on': <think>,</think>) is cut
    # off before scoring and has think_tokens of its own on top of each answer budget (evaluate/thinking.py)
    think: str | None = option(None, "a reasoning model: 'on' (<think>,</think>) or START,END; its thought is "
                               "generated first, then the answer after it (evaluate/thinking.py)")
    think_tokens: int = option(1024, "--think: the thought's own token budget, on top of each answer's", ge=1)
    device: str | None = option(None, "cpu, cuda or cuda:N for the hf model, ppl and general (default: CUDA when "
                                "present)", neutral=True)
    trust_remote_code: bool = option(False, "run the model repository's own code (off unless given)")
    # N engines (vLLM) or models (hf), each on its own GPUs (the backend's `gpus` each) or CPU threads, predicting
    # disjoint shards of every job; their predictions merge into one tree (evaluate/runner.py)
    data_parallel_size: int = option(1, "local backends: engines predicting disjoint shards of every job, each on its "
                                     "own GPUs (tensor-parallel-size each) or CPU threads", neutral=True, ge=1)
    # a job whose share of empty answers exceeds this stops (the empties are not kept): an endpoint that answers
    # nothing past its RoPE window must not score as a model that answers wrongly; 1.0 scores them as nulls
    empty_limit: float = option(0.5, "stop when more than this share of a job's answers is empty (a server's RoPE "
                                "window); 1 scores empty answers as nulls", neutral=True, ge=0, le=1)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEval:
    """The run config's `eval:` section: what `longrecipe run` evaluates after training (`longrecipe train` ignores
    it; the training config holds it as a plain mapping, since training never imports evaluation)."""

    suites: tuple[str, ...] = ("ruler", "niah", "passkey")
    lengths: tuple[int, ...] = ()  # default: the native window doubled up to the target length
    samples: int = option(EvalConfig.samples, ge=1)  # `longrecipe eval`'s defaults: one source
    backend: str = EvalConfig.backend  # a registered backend: `run` checks it, and the suites, before training
    essay_dir: str | None = None
    compare_base: bool = True
    # any other `longrecipe eval` key (niah_depths, chat_template, dtype, batch_size, ...): eval.options.KEY=VALUE,
    # validated by `run` before it trains
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Any) -> RunEval:
        """The section of a run config (train/config.py `RunConfig.eval`), checked: unknown keys and ranges are one
        line naming `eval.KEY`."""
        if not isinstance(cfg.eval, dict):
            raise ConfigError(f"eval: expected a mapping, got {cfg.eval!r}")
        ev = C.build(cls, cfg.eval, prefix="eval.")
        if any(n < 1 for n in ev.lengths):
            raise ConfigError(f"eval.lengths: expected positive lengths, got {list(ev.lengths)}")
        return ev


def _own_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(EvalConfig) if f.name != "options"]


COMMON = tuple(f.name for f in _own_fields())
# Common settings that may grow between two runs into one --out (results then hold the union), and common settings
# that change no sample and no score: read from their declarations, as a suite's or a backend's options say the same
# of themselves (option(additive=, neutral=)).
ADDITIVE = tuple(f.name for f in _own_fields() if f.metadata.get("additive"))
NEUTRAL = tuple(f.name for f in _own_fields() if f.metadata.get("neutral"))


def backend_owners() -> dict[str, tuple[Any, dataclasses.Field]]:
    """Every backend option's config key -> (the first backend that declares it, its field); a key several backends
    declare (dtype: hf and vllm) is one flag."""
    out: dict[str, tuple[Any, dataclasses.Field]] = {}
    for spec in BACKENDS.values():
        for key, f in backend_option_fields(spec.cls):
            out.setdefault(key, (spec.cls, f))
    return out


def backend_options(cfg: EvalConfig, name: str | None = None) -> Any:
    """The options dataclass of the run's backend (or of backend `name`) from the config."""
    cls = BACKENDS[name or cfg.backend].cls
    return _options_of(cls.Options, backend_option_fields(cls), cfg)


def setting_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    """(config key, field, type) of every setting: the run's own, every backend's, every suite's; a key declared by
    several owners appears once. What the CLI builds its flags from."""
    out: dict[str, tuple[str, dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(EvalConfig)
    for f in _own_fields():
        out[f.name] = (f.name, f, hints[f.name])
    for key, (cls, f) in backend_owners().items():
        out.setdefault(key, (key, f, typing.get_type_hints(cls.Options)[f.name]))
    for key, (task, f) in option_owners().items():
        out.setdefault(key, (key, f, typing.get_type_hints(task.Options)[f.name]))
    return list(out.values())


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


def _extra_keys() -> dict[str, dataclasses.Field]:
    """Every key that is not the run's own: the backends' and the suites' options."""
    return {**{k: f for k, (_, f) in backend_owners().items()}, **option_keys()}


def build_config(data: Mapping[str, Any]) -> EvalConfig:
    """Flat keys (a YAML file, overrides, flags, a `run` or `train.eval` section) -> EvalConfig: the one place an
    eval config is made, each default applied here and only here (from its declaration). An unknown key names the
    closest valid one; every backend's and suite's options are validated (types, ranges) whether or not they run."""
    extra = _extra_keys()
    for key in data:
        if key not in COMMON and key not in extra:
            raise ConfigError(f"unknown config key '{key}'{C._closest(str(key), list(COMMON) + list(extra))}")
    common = {k: v for k, v in data.items() if k in COMMON and v is not None}
    missing = [k for k in ("model", "out") if common.get(k) is None]
    if missing:
        raise ConfigError(f"the eval config needs '{missing[0]}'")
    cfg = C.build(EvalConfig, common)
    given = {k: v for k, v in data.items() if k in extra and k not in COMMON and v is not None}
    cfg = dataclasses.replace(cfg, options=given)
    resolved = {}
    for key, value in _option_values(cfg):
        if key in given:
            resolved[key] = value
    return dataclasses.replace(cfg, options=resolved)


def _option_values(cfg: EvalConfig) -> Iterator[tuple[str, Any]]:
    """(config key, resolved value) of every backend's, then every suite's options, each owner's dataclass built
    from the config (a key several owners share comes once per owner)."""
    for name, spec in BACKENDS.items():
        inst = backend_options(cfg, name)
        yield from ((key, getattr(inst, f.name)) for key, f in backend_option_fields(spec.cls))
    for task in REGISTRY.values():
        inst = suite_options(cfg, task)
        yield from ((key, getattr(inst, f.name)) for key, f in option_fields(task))


def from_section(section: Mapping[str, Any], fixed: Mapping[str, Any], where: str, owner: str,
                 defaults: Mapping[str, Any] | None = None) -> EvalConfig:
    """An eval section of a bigger config (`run`'s `eval:`, `train.eval`, a demo evaluation) -> EvalConfig. The
    section's own keys and its `options` mapping (any other eval key) are eval keys; `fixed` are the keys the caller
    sets itself (the model, the folder), refused when the section gives them; `defaults` are the caller's own
    defaults for keys the section may set; `where` names the section in errors, `owner` the command that sets
    `fixed`. Why one function: `eval`, `run`, the demo and training's evaluation
    then agree on every key, every default (EvalConfig's, applied once in build_config) and every refusal."""
    options = dict(section.get("options") or {})
    own = {k: v for k, v in section.items() if k != "options"}
    twice = sorted(set(own) & set(options))
    if twice:
        raise ConfigError(f"{where}.options.{twice[0]}: use {where}.{twice[0]}")
    taken = sorted(set(fixed) & (set(own) | set(options)))
    if taken:
        raise ConfigError(f"{where}.options.{taken[0]}: set by {owner} itself")
    return build_config({**(defaults or {}), **own, **options, **fixed})


def _options_of(cls: type, fields: list[tuple[str, dataclasses.Field]], cfg: EvalConfig) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for key, f in fields:
        if key in COMMON or key in cfg.options:
            value = C._coerce(getattr(cfg, key) if key in COMMON else cfg.options[key], hints[f.name], key)
            C._check_range(value, f.metadata, key)
            values[f.name] = value
    return cls(**values)


def suite_options(cfg: EvalConfig, task: Task) -> Any:
    """The suite's options dataclass from the config (its defaults where the config says nothing; keys that are
    common settings, such as chat_template, read from those). A bad value is one line naming its config key."""
    return _options_of(task.Options, option_fields(task), cfg)


def flat(cfg: EvalConfig) -> dict[str, Any]:
    """The resolved config as one flat mapping (what eval_config.json holds): the run's own settings, then every
    backend's and every suite's option with its value or default."""
    out = {k: v for k, v in asdict(cfg).items() if k != "options"}
    for key, value in _option_values(cfg):
        out.setdefault(key, value)
    return json.loads(json.dumps(out))


def _foreign_options(cfg: EvalConfig) -> list[str]:
    """Options of other backends given a value other than their default: a setting the run would ignore."""
    own = {key for key, _ in backend_option_fields(BACKENDS[cfg.backend].cls)}
    return [key for key, (_, f) in backend_owners().items()
            if key not in own and key in cfg.options and cfg.options[key] != f.default]


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
    unknown = [k for k in cfg.options if k not in _extra_keys()]
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'")
    if foreign := _foreign_options(cfg):
        owners = [n for n, spec in BACKENDS.items() if foreign[0] in dict(backend_option_fields(spec.cls))]
        raise ConfigError(f"--{foreign[0].replace('_', '-')} is an option of --backend {' / '.join(owners)}; "
                          f"--backend {cfg.backend} does not use it")
    spec = BACKENDS[cfg.backend]
    options = backend_options(cfg)
    spec.cls.check(cfg, options)
    _check_parallel(cfg, spec, options)
    path = model_dirs.resolve(cfg.model if spec.local_model else getattr(options, "tokenizer", None) or cfg.model)
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


def _check_parallel(cfg: EvalConfig, spec: Any, options: Any) -> None:
    if cfg.data_parallel_size > 1:
        if not spec.local_model:
            raise ConfigError(f"--data-parallel-size runs local engines; --backend {cfg.backend} sends requests to a "
                              f"server (use --concurrency, and the server's own data parallelism)")
        gpus = visible_gpus()
        per = spec.cls.gpus(options)
        need = cfg.data_parallel_size * per
        if gpus and need > gpus:
            raise ConfigError(f"--data-parallel-size {cfg.data_parallel_size} x {per} GPUs per engine needs {need} "
                              f"GPUs ({gpus} visible)")
