"""The transformers backend: batched greedy decoding with a KV cache and left padding, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base.config import option
from longrecipe.evaluate.backends import BackendBase, Completion, Dtype, Request, truncate_at_stop


@dataclass(frozen=True)
class HFOptions:
    dtype: Dtype = option("auto", "weights dtype (auto: float32 on CPU, bfloat16 on CUDA for hf; the model's for "
                          "vLLM)")
    attn_implementation: str = option("sdpa", "hf: sdpa, eager or flash_attention_2", neutral=True)
    device_map: str | None = option(None, "hf: 'auto' spreads the layers over every visible GPU", neutral=True)


class HFBackend(BackendBase):
    """transformers: batched greedy decoding with KV cache and left padding, CPU or GPU."""

    name = "hf"
    Options = HFOptions

    def __init__(self, model_dir: str, device: str | None = None, batch_size: int = 8, dtype: str = "auto",
                 trust_remote_code: bool = False, attn_implementation: str = "sdpa", device_map: str | None = None):
        import torch

        from longrecipe.base.inference import load_model

        torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
        self.model, self.tokenizer = load_model(model_dir, device=device, dtype=torch_dtype,
                                                trust_remote_code=trust_remote_code,
                                                attn_implementation=attn_implementation, device_map=device_map)
        self._attach(batch_size)

    def _attach(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.max_length = int(self.model.config.max_position_embeddings)
        eos = self.model.generation_config.eos_token_id
        self.eos = [eos] if isinstance(eos, int) else list(eos or [self.tokenizer.eos_token_id])

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, batch_size: int = 8) -> HFBackend:
        """A backend over a model already in memory: the weights being trained (train.eval), not a copy."""
        self = cls.__new__(cls)
        self.model, self.tokenizer = model, tokenizer
        self._attach(batch_size)
        return self

    def settings(self) -> dict[str, Any]:
        """What this engine ran with that can move a score (the run manifest, evaluate/runner.py)."""
        import transformers

        return {"backend_version": f"transformers {transformers.__version__}",
                "dtype": str(self.model.dtype).removeprefix("torch."),
                "attn_implementation": getattr(self.model.config, "_attn_implementation", None)}

    @classmethod
    def from_config(cls, cfg: Any, model_dir: Path) -> HFBackend:
        from longrecipe.evaluate.config import backend_options

        opts = backend_options(cfg)
        return cls(str(model_dir), device=cfg.device, batch_size=cfg.batch_size, dtype=opts.dtype,
                   trust_remote_code=cfg.trust_remote_code, attn_implementation=opts.attn_implementation,
                   device_map=opts.device_map)

    @classmethod
    def lm_eval_model(cls, cfg: Any, options: Any, model_dir: Path, window: int,
                      log: Any = print) -> tuple[str, dict[str, Any]]:
        """lm-eval's `hf` model on the run's device (default: CUDA when present, else CPU) and dtype."""
        import torch

        return "hf", {"pretrained": str(model_dir), "max_length": int(window), "dtype": options.dtype,
                      "trust_remote_code": cfg.trust_remote_code,
                      "device": cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")}

    def generate(self, requests: Sequence[Request]) -> list[str]:
        from longrecipe.base.inference import greedy_generate

        out: list[str] = [""] * len(requests)
        by_len: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            by_len.setdefault(r.max_new_tokens, []).append(i)
        for new, idx in by_len.items():
            counts: list[tuple[int, bool]] = []
            texts = greedy_generate(self.model, self.tokenizer, [requests[i].prompt for i in idx], new,
                                    self.batch_size, eos_token_id=self.eos, counts=counts)
            for i, t, (n, ended) in zip(idx, texts, counts):
                cut = truncate_at_stop(t, requests[i].stop)
                out[i] = Completion(cut, "stop" if ended or cut != t else "length", n)
        return out

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probs of each continuation given its context (context tokenized with special tokens)."""
        import torch

        with torch.inference_mode():
            return self._loglikelihood(pairs)

    def _loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        for context, continuation in pairs:
            ctx = self.tokenizer(context)["input_ids"]
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cont], device=device)
            logp = torch.log_softmax(self.model(ids).logits[0, len(ctx) - 1 : -1].float(), -1)
            out.append(float(logp.gather(-1, torch.tensor(cont, device=device)[:, None]).sum()))
        return out
