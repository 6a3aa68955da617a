"""One protocol for every inference backend (greedy generation with stop strings, and log-likelihoods) and the
registry of backends: the CLI's choices and the runner read it; adding a backend = its file + one line here.

Why token ids cross the boundary: both backends receive the prompt tokenized once by the model's own tokenizer,
so a difference in answers is a difference of the engines, never of tokenization.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class Backend(Protocol):
    name: str
    tokenizer: Any
    max_length: int

    def generate(self, requests: Sequence[Request]) -> list[str]: ...  # Completion where the engine says more

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend. `impl` = "module:Class" whose `from_config(cfg, model_dir)` builds it, imported only
    when the backend is used (implementations import torch, vLLM or an HTTP client; the registry stays light)."""

    name: str
    impl: str
    help: str
    local_model: bool = True  # False: a served endpoint (no log-likelihood suites, no local weights)

    def make(self, cfg: Any, model_dir: Any) -> Backend:
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(module), cls).from_config(cfg, model_dir)


BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    BACKENDS[spec.name] = spec
    return spec


register_backend(BackendSpec("hf", "longrecipe.evaluate.hf_backend:HFBackend", "transformers"))
register_backend(BackendSpec("vllm", "longrecipe.evaluate.vllm_backend:VLLMBackend", "the offline vLLM engine"))
register_backend(BackendSpec("openai", "longrecipe.evaluate.openai_backend:OpenAIBackend",
                             "a served OpenAI-compatible endpoint", local_model=False))
