"""The vLLM backend: the offline engine, for the CUDA `vllm` package and the CPU build `vllm-cpu` alike."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base.config import ConfigError, option
from longrecipe.evaluate.backends import BackendBase, Completion, Dtype, Request, truncate_at_stop, visible_gpus
from longrecipe.evaluate.hf_backend import HFBackend
from longrecipe.evaluate.serving import CPU_KV_CACHE_GIB, engine_dtype, engine_settings


def has_vllm_distribution() -> bool:
    """lm-eval's vllm model reads the `vllm` distribution's version; the CPU build installs as `vllm-cpu`."""
    import importlib.metadata

    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class VLLMOptions:
    dtype: Dtype = option("auto", "weights dtype (auto: float32 on CPU, bfloat16 on CUDA for hf; the model's for "
                          "vLLM)")
    tensor_parallel_size: int = option(1, "vllm: GPUs per engine", neutral=True, ge=1)
    gpu_memory_utilization: float = option(0.85, "vllm: share of GPU memory", neutral=True, gt=0, le=1)
    max_model_len: int | None = option(None, "vLLM max_model_len (default: longest length)", neutral=True, ge=1)


class VLLMBackend(BackendBase):
    """vLLM's offline engine: one code path for the CUDA `vllm` package and the CPU build `vllm-cpu`."""

    name = "vllm"
    Options = VLLMOptions
    preferred_batch = 1024  # requests handed to the engine at once: its continuous batching sees all of them

    def __init__(self, model_dir: str, max_model_len: int | None = None, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.85, enforce_eager: bool | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, seed: int = 0):
        import torch
        from transformers import AutoTokenizer

        overrides: dict[str, Any] = {}
        if max_model_len:  # vLLM's RoPE cache must reach max_model_len (transformers computes any position)
            config = json.loads((Path(model_dir) / "config.json").read_text())
            overrides, env = engine_settings(config, max_model_len)  # a length it cannot hold: one line, first
            os.environ.update(env)
        cpu = not torch.cuda.is_available()
        if cpu:
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError("the vllm backend needs vLLM: pip install 'longrecipe[vllm]' on CUDA, or "
                             "'longrecipe[vllm-cpu]' on CPU") from None
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        kwargs: dict[str, Any] = {"model": str(model_dir), "tokenizer": str(model_dir), "seed": seed,
                                  "trust_remote_code": trust_remote_code,
                                  "enforce_eager": cpu if enforce_eager is None else enforce_eager,
                                  "dtype": engine_dtype(dtype, cpu)}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
            if overrides:
                kwargs["hf_overrides"] = overrides
        if not cpu:
            kwargs.update(tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization)
        self.llm = LLM(**kwargs)
        self.max_length = int(max_model_len or self.llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        """Stop the engine's processes now. Why: a data-parallel worker that returns with the engine alive never
        exits (multiprocessing joins its children at exit, and vLLM's engine core runs until told to stop)."""
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()

    def settings(self) -> dict[str, Any]:
        """What this engine ran with that can move a score (the run manifest, evaluate/runner.py)."""
        import vllm

        conf = self.llm.llm_engine.model_config
        return {"backend_version": f"vllm {vllm.__version__}", "dtype": str(conf.dtype).removeprefix("torch."),
                "attn_implementation": None}

    @classmethod
    def from_config(cls, cfg: Any, model_dir: Path) -> VLLMBackend:
        from longrecipe.evaluate.config import backend_options

        opts = backend_options(cfg)
        return cls(str(model_dir), max_model_len=opts.max_model_len or max(max(cfg.lengths), 1),
                   tensor_parallel_size=opts.tensor_parallel_size, gpu_memory_utilization=opts.gpu_memory_utilization,
                   dtype=opts.dtype, trust_remote_code=cfg.trust_remote_code)

    @classmethod
    def check(cls, cfg: Any, options: VLLMOptions) -> None:
        if options.tensor_parallel_size > 1 and options.tensor_parallel_size > (gpus := visible_gpus()):
            raise ConfigError(f"--tensor-parallel-size {options.tensor_parallel_size} needs as many GPUs ({gpus} "
                              f"visible)")

    @classmethod
    def gpus(cls, options: VLLMOptions) -> int:
        return options.tensor_parallel_size

    @classmethod
    def worker_env(cls, options: VLLMOptions, cores: list[int]) -> dict[str, str]:
        """vLLM's CPU engine binds its OpenMP threads to every core unless told which: one list (on CPU an engine is
        one rank; tensor_parallel_size is a GPU option there)."""
        return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores)}

    @classmethod
    def lm_eval_model(cls, cfg: Any, options: VLLMOptions, model_dir: Path, window: int,
                      log: Any = print) -> tuple[str, dict[str, Any]]:
        """lm-eval's `vllm` model (tensor parallel and memory as asked); its `hf` model where the `vllm`
        distribution is absent (the CPU build installs as `vllm-cpu`, whose version lm-eval cannot read)."""
        import torch

        if not has_vllm_distribution():
            log("note: general: lm-eval's vllm model needs the `vllm` distribution (the CPU build installs as "
                "vllm-cpu, whose version lm-eval cannot read); lm-eval's hf model scores the general tasks")
            return HFBackend.lm_eval_model(cfg, options, model_dir, window, log)
        cuda = torch.cuda.is_available()
        dtype = ("auto" if cuda else "float32") if options.dtype == "auto" else options.dtype
        return "vllm", {"pretrained": str(model_dir), "max_model_len": int(window), "dtype": dtype,
                        "tensor_parallel_size": options.tensor_parallel_size, "enforce_eager": not cuda,
                        "gpu_memory_utilization": options.gpu_memory_utilization, "seed": cfg.seed,
                        "trust_remote_code": cfg.trust_remote_code}

    def generate(self, requests: Sequence[Request]) -> list[str]:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": self.tokenizer(r.prompt)["input_ids"]} for r in requests]
        params = [SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens, stop=list(r.stop) or None,
                                 skip_special_tokens=True) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Completion(truncate_at_stop(o.outputs[0].text, r.stop), o.outputs[0].finish_reason,
                           len(o.outputs[0].token_ids)) for o, r in zip(outs, requests)]

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
