"""One protocol for every inference backend (greedy generation with stop strings, and log-likelihoods) and the
registry of backends: the CLI's choices and flags, the eval config and the runner read it; adding a backend = its
file (a `BackendBase` subclass with its `Options` dataclass) + one `register_backend` line here.

A backend declares what it can do (`local_model`, `streams`, `preferred_batch`, `close`, `loglikelihood`,
`lm_eval_model`, `gpus`) and its own settings (`Options`, declared with `option()`: config key, flag, default,
range, identity rule); the runner and the evaluators ask those, never a backend's name.

Why prompts cross the boundary as text: every backend tokenizes a prompt with the model's own tokenizer (the
served one sends its ids), so a difference in answers is a difference of the engines, never of tokenization. Why
the implementations' modules import torch, transformers or vLLM only inside their methods: the CLI reads every
backend's options to build its flags, and `report` / `check` must stay torch-free.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args

Dtype = Literal["auto", "bfloat16", "float16", "float32"]  # weights dtype of the local engines (and `serve`)
DTYPES = get_args(Dtype)


@dataclass(frozen=True)
class Request:
    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = field(default_factory=tuple)


class Completion(str):
    """A completion's text (a str: every scorer reads it as before) with what the engine said of it: why it stopped
    (`finish_reason`: "stop" at an end token or stop string, "length" at max_new_tokens; None when unknown) and how
    many tokens it generated. Why: an empty answer from a server that cannot place tokens past its RoPE window
    looks like a wrong answer; the runner records both and counts empties as nulls (evaluate/runner.py)."""

    finish_reason: str | None
    tokens: int | None

    def __new__(cls, text: str, finish_reason: str | None = None, tokens: int | None = None) -> Completion:
        obj = super().__new__(cls, text)
        obj.finish_reason, obj.tokens = finish_reason, tokens
        return obj


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut a completion at the first stop string (what both engines do when asked to stop)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


@dataclass(frozen=True)
class NoOptions:
    """A backend without settings of its own."""


class Backend(Protocol):
    """What the runner and the evaluators use: capabilities are class facts, read before anything is built."""

    name: ClassVar[str]
    Options: ClassVar[type]  # its settings dataclass (option() fields: config keys and flags)
    local_model: ClassVar[bool]  # weights on this machine: log-likelihood suites, data-parallel engines
    streams: ClassVar[bool]  # hands back each request as it completes (`completed`): the runner gives it a whole job
    tokenizer: Any
    max_length: int
    preferred_batch: int  # requests handed to it at once (an engine with continuous batching takes many)

    @classmethod
    def from_config(cls, cfg: Any, model_dir: Path) -> Backend: ...
    @classmethod
    def check(cls, cfg: Any, options: Any) -> None: ...  # one-line refusals before anything runs (no torch)
    @classmethod
    def gpus(cls, options: Any) -> int: ...  # GPUs one engine takes (a data-parallel worker's share)
    @classmethod
    def worker_env(cls, options: Any, cores: list[int]) -> dict[str, str]: ...  # a CPU worker's engine binding
    @classmethod
    def lm_eval_model(cls, cfg: Any, options: Any, model_dir: Path, window: int,
                      log: Any = print) -> tuple[str, dict[str, Any]]: ...  # lm-eval's model for the general suite

    def generate(self, requests: Sequence[Request]) -> list[str]: ...  # Completion where the engine says more
    def completed(self, requests: Sequence[Request]) -> Iterator[tuple[int, str]]: ...  # (index, answer) as done
    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...
    def settings(self) -> dict[str, Any]: ...  # what it ran with that can move a score (the run manifest)
    def close(self) -> None: ...


class BackendBase:
    """Defaults of the `Backend` protocol: a local engine without options, answering a batch at a time."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    local_model: ClassVar[bool] = True
    streams: ClassVar[bool] = False
    preferred_batch: int = 0  # 0: the run's --batch-size

    @classmethod
    def check(cls, cfg: Any, options: Any) -> None:
        return None

    @classmethod
    def gpus(cls, options: Any) -> int:
        return 1

    @classmethod
    def worker_env(cls, options: Any, cores: list[int]) -> dict[str, str]:
        return {}

    @classmethod
    def lm_eval_model(cls, cfg: Any, options: Any, model_dir: Path, window: int,
                      log: Any = print) -> tuple[str, dict[str, Any]]:
        raise ValueError(f"the general suite has no lm-eval model for --backend {cls.name}")

    def completed(self, requests: Sequence[Request]) -> Iterator[tuple[int, str]]:
        return enumerate(self.generate(requests))

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        raise ValueError(f"--backend {self.name} gives no log-likelihoods")

    def settings(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: `impl` = "module:Class". The module is imported when the registry is read for flags or
    checks; it imports its engine (torch, vLLM, an HTTP client) only when the backend is built."""

    name: str
    impl: str
    help: str

    @cached_property
    def cls(self) -> type[Backend]:
        module, name = self.impl.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def local_model(self) -> bool:
        return bool(self.cls.local_model)

    def make(self, cfg: Any, model_dir: Any) -> Backend:
        return self.cls.from_config(cfg, model_dir)


def visible_gpus() -> int:
    """CUDA devices this process sees; torch is imported only when a check needs the count (more than one GPU asked
    for), so that the other checks stay torch-free."""
    import torch

    return torch.cuda.device_count()


BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    BACKENDS[spec.name] = spec
    return spec


def backend_option_fields(cls: type) -> list[tuple[str, dataclasses.Field]]:
    """(config key, field) of each option of a backend: its key is the field's name unless it names one (a flag
    keeps its name across backends, as --dtype for hf and vllm)."""
    return [(f.metadata.get("key") or f.name, f) for f in dataclasses.fields(cls.Options)]


register_backend(BackendSpec("hf", "longrecipe.evaluate.hf_backend:HFBackend", "transformers"))
register_backend(BackendSpec("vllm", "longrecipe.evaluate.vllm_backend:VLLMBackend", "the offline vLLM engine"))
register_backend(BackendSpec("openai", "longrecipe.evaluate.openai_backend:OpenAIBackend",
                             "a served OpenAI-compatible endpoint"))
