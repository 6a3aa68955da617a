"""Long-context language modelling: perplexity of held-out text at each context length (suite `ppl`).

Why: it is the other half of how PI, YaRN and PoSE judge a context extension (perplexity at growing windows
beside passkey retrieval), and it needs no fragile skill: a model that cannot use positions beyond its window
shows it at once (its perplexity explodes), one that was extended shows how well. The text is prose of stdlib
modules that no training here uses (`corpus.heldout_paragraphs`), or a JSONL file of {"text"} rows. Each length
L is scored on non-overlapping windows of L tokens (BOS first) cut from the concatenated text, every token of a
window counted; PoSE and PI use a sliding window (stride 256) on PG-19/Proof-pile instead: cheaper here, and the
same ordering between models. Every length scores the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from longrecipe.base import corpus, model_dirs
from longrecipe.base.inference import load_model, next_token_scores
from longrecipe.base.schema import ScoreRow
from longrecipe.tasks.ppl import TASK_VERSION, PplOptions


def token_stream(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"]
    return ids


def heldout_texts(path: str | None = None) -> list[str]:
    return list(corpus.heldout_paragraphs()) if path is None else corpus.load_texts(path)


def window_nll(model: Any, windows: torch.Tensor, batch_size: int = 4) -> tuple[float, int]:
    """Summed next-token NLL over every window (rows of `windows`) and the number of predicted tokens (log-probs
    from hidden states in chunks, as the impactful-token analysis computes them: no full fp32 logits)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        logp = next_token_scores(model, windows[i : i + batch_size].to(device))[1]
        total -= float(logp.double().sum())
        count += logp.numel()
    return total, count


def run_perplexity(model_dir: str | Path, lengths: Sequence[int], device: str | None = None,
                   windows_at_longest: int = 8, text_file: str | None = None, log=print) -> list[ScoreRow]:
    """Every length scores the same tokens (the first `windows_at_longest` x max(lengths) of the text), so the
    lengths differ only in how much context each token has."""
    model, tok = load_model(model_dirs.resolve(str(model_dir)), device=device)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    stream = token_stream(tok, heldout_texts(text_file))
    budget = min(len(stream), windows_at_longest * (max(lengths) - len(bos)))
    rows = []
    for n in lengths:
        body = n - len(bos)
        k = budget // body
        if k == 0:
            log(f"note: ppl at {n}: the held-out text has only {len(stream)} tokens; skipped")
            continue
        chunks = torch.tensor([bos + stream[j * body : (j + 1) * body] for j in range(k)])
        nll, count = window_nll(model, chunks)
        rows.append(ScoreRow("ppl", "heldout", "perplexity", round(math.exp(nll / count), 4), TASK_VERSION, n,
                             None, k))
    log("ppl: " + ", ".join(f"{r.context_length}={r.value:.2f}" for r in rows))
    return rows


def check(cfg: Any, options: PplOptions) -> None:
    """The ppl suite scores a model's weights on this machine; a served model's log-likelihoods come through the
    general suite (lm-eval's local-completions: `longrecipe_heldout` gives word/byte perplexity and bits per byte)."""
    from longrecipe.evaluate.backends import BACKENDS

    if not BACKENDS[cfg.backend].local_model:
        raise ValueError(f"--suite ppl scores local weights and cannot run with --backend {cfg.backend} (a served "
                         f"model); use --suite general --general-tasks longrecipe_heldout for a served model's "
                         f"perplexity")


def evaluate(cfg: Any, options: PplOptions, model_dir: Path, out: Path, log=print) -> list[ScoreRow]:
    return run_perplexity(model_dir, cfg.lengths, device=cfg.device, text_file=options.file, log=log)
