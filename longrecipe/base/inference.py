"""The one modelling module that train, evaluate and the analysis share: load a model and its tokenizer, greedy
generation, next-token scores.

Why one module: the harness's scores, the trainer's progress checks and the impactful-token analysis must see a
model the same way (safetensors only, no remote code unless asked, the same padding). Greedy decoding pads on the
left so that in a batch every prompt ends at the same column and the first generated token of each row is
conditioned on its own last prompt token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from longrecipe.base.tokenization import load_tokenizer


def load_model(model_dir: str | Path, device: str | None = None, dtype: torch.dtype | None = None,
               trust_remote_code: bool = False, attn_implementation: str = "sdpa",
               device_map: str | None = None) -> tuple[Any, Any]:
    """Load a local Hugging Face directory (safetensors only); returns (model, tokenizer). `device_map="auto"`
    spreads the layers over every visible GPU (accelerate) instead of moving the model to `device`."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: expected a Hugging Face directory with config.json")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code,
        attn_implementation=attn_implementation, device_map=device_map)
    if device_map is None:
        model = model.to(device)
    model.eval()
    return model, tok


CPU_ALONE_FROM = 2048  # prompt tokens from which a CPU prefill runs one prompt per call (see _batches)


def _batches(order: list[int], lengths: list[int], batch_size: int, cpu: bool) -> list[list[int]]:
    """Rows of each generate call, longest prompts first. On CPU a prompt of CPU_ALONE_FROM tokens or more is a
    call of its own. Why: a padded batch needs an attention mask, and with a mask SDPA's CPU flash kernel computes
    the whole T x T square instead of skipping the blocks above the diagonal (2.1x the attention time at 4k,
    measured); a whole 4k RULER generation took 1.76x as long per prompt in batches of 8 as one at a time, with
    identical answers (benchmarks/hf_batch_long_prompts.py, RESULTS.md). On a GPU batching pays for itself."""
    out: list[list[int]] = []
    for i in order:
        if cpu and lengths[i] >= CPU_ALONE_FROM:
            out.append([i])
        elif out and len(out[-1]) < batch_size and not (cpu and lengths[out[-1][0]] >= CPU_ALONE_FROM):
            out[-1].append(i)
        else:
            out.append([i])
    return out


@torch.inference_mode()
def greedy_generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                    batch_size: int = 8, progress: bool = False, eos_token_id: Any = None,
                    counts: list | None = None) -> list[str]:
    """Greedy continuations of `prompts` (decoded, special tokens dropped), in the input order. `counts`, when
    given, receives (generated tokens up to and including the end token, whether an end token came) per prompt."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(prompts)
    found: list[tuple[int, bool]] = [(0, False)] * len(prompts)
    ends = set([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or [tokenizer.eos_token_id])
    device = next(model.parameters()).device
    for idx in tqdm(_batches(order, [len(e) for e in encoded], batch_size, device.type == "cpu"),
                    disable=not progress, desc="generate"):
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id if eos_token_id is None else eos_token_id,
        )
        for row, i in enumerate(idx):
            new = gen[row, width:].tolist()
            out[i] = tokenizer.decode(new, skip_special_tokens=True)
            stop = next((k for k, t in enumerate(new) if t in ends), None)
            found[i] = (len(new) if stop is None else stop + 1, stop is not None)
    if counts is not None:
        counts[:] = found
    return out


@torch.inference_mode()
def next_token_scores(model: Any, ids: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(logit, log-prob) that `model` gives the actual next token at every position of each row of `ids`.

    Shapes: ids (B, T) -> two (B, T-1) float32 tensors."""
    base = getattr(model, model.base_model_prefix)
    hidden = base(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
    head = model.get_output_embeddings()
    target = ids[:, 1:]
    logits_out, logp_out = [], []
    for s in range(0, target.shape[1], chunk):
        logits = head(hidden[:, s : min(s + chunk, target.shape[1])]).float()
        tgt = target[:, s : s + logits.shape[1]].unsqueeze(-1)
        picked = logits.gather(-1, tgt).squeeze(-1)
        logits_out.append(picked)
        logp_out.append(picked - torch.logsumexp(logits, dim=-1))
    return torch.cat(logits_out, 1), torch.cat(logp_out, 1)
