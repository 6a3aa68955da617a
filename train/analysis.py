"""Impactful-token analysis (LongRecipe, step 1): which token types change most between a base model H and a
context-extended model H' of the same family.

For every position of every text window, both models score the actual next token (its logit and log-prob);
Delta(t) = S_H'(t) - S_H(t). Per position bucket, the top 20 % of tokens by Delta are classified by type
(lexicon.py) and their shares are compared with the shares among all tokens: the over-represented types are the
anchors that data selection keeps. Scores are computed from hidden states one chunk of positions at a time, so an
8B model with a 128k vocabulary never materialises a whole window of fp32 logits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from longrecipe.base import corpus, model_dirs
from longrecipe.base.inference import load_model, next_token_scores
from longrecipe.base.io import atomic_dir, write_json
from longrecipe.base.tokenization import tokenizer_hash
from longrecipe.train.lexicon import TYPES, token_types

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)


def same_tokenizer(a: Any, b: Any) -> bool:
    return tokenizer_hash(a) == tokenizer_hash(b)


def windows(tokenizer: Any, texts: Iterable[str], window: int, max_windows: int | None) -> list[list[int]]:
    """Non-overlapping windows of exactly `window` tokens (texts concatenated, BOS at each text start)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text)["input_ids"]
        if max_windows and len(stream) >= window * max_windows:
            break
    n = len(stream) // window
    if max_windows:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"the data holds {len(stream)} tokens, fewer than one window of {window}")
    return [stream[i * window : (i + 1) * window] for i in range(n)]


def shares(deltas: np.ndarray, types: np.ndarray, buckets: int, top: float) -> list[dict]:
    """Per position bucket and type: share among the top `top` fraction of tokens by Delta, and among all."""
    positions = np.arange(deltas.shape[1])
    edges = np.linspace(0, deltas.shape[1], buckets + 1).astype(int)
    rows = []
    for b in range(buckets):
        sel = (positions >= edges[b]) & (positions < edges[b + 1])
        d, t = deltas[:, sel].ravel(), types[:, sel].ravel()
        k = max(1, int(round(top * len(d))))
        best = t[np.argsort(-d, kind="stable")[:k]]
        for name in TYPES:
            rows.append({"bucket": b, "start": int(edges[b]), "end": int(edges[b + 1]), "type": name,
                         "top_count": int((best == name).sum()), "top_share": float((best == name).mean()),
                         "all_share": float((t == name).mean())})
    return rows


def enrichment(rows: Sequence[dict]) -> dict[str, float]:
    """Over all buckets: share among the top tokens / share among all tokens, per type (1 = no change)."""
    out = {}
    for name in TYPES:
        top = sum(r["top_share"] for r in rows if r["type"] == name)
        every = sum(r["all_share"] for r in rows if r["type"] == name)
        out[name] = top / every if every else 0.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def analyze(base: Any, extended: Any, tokenizer: Any, texts: Iterable[str], window: int, buckets: int = 8,
            top: float = 0.2, score: str = "logit", batch_size: int = 4, max_windows: int | None = None) -> dict:
    """Run both models over the windows; returns rows (per bucket x type) and the enrichment ranking."""
    wins = windows(tokenizer, texts, window, max_windows)
    device = next(base.parameters()).device
    deltas, kinds = [], []
    for s in tqdm(range(0, len(wins), batch_size), desc="analyze", disable=len(wins) <= batch_size):
        ids = torch.tensor(wins[s : s + batch_size], device=device)
        lb, pb = next_token_scores(base, ids)
        le, pe = next_token_scores(extended, ids.to(next(extended.parameters()).device))
        d = (le.cpu() - lb.cpu()) if score == "logit" else (pe.cpu() - pb.cpu())
        deltas.append(d.numpy())
        for row in wins[s : s + batch_size]:
            pieces = [tokenizer.decode([t]) for t in row]
            kinds.append(token_types(pieces)[1:])  # the type of each predicted (next) token
    delta = np.concatenate(deltas)
    rows = shares(delta, np.asarray(kinds), buckets, top)
    return {"rows": rows, "enrichment": enrichment(rows), "windows": len(wins), "window": window,
            "tokens": int(delta.size), "score": score, "top": top, "buckets": buckets}


def plot(result: dict, out: Path) -> None:
    """Like the paper's Fig. 4: share of each type among the top tokens vs position (dashed: among all)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(t for t in TYPES if t != "other"):
        rows = [r for r in result["rows"] if r["type"] == name]
        x = [(r["start"] + r["end"]) / 2 for r in rows]
        color = plt.cm.tab10(i)
        ax.plot(x, [100 * r["top_share"] for r in rows], marker="o", color=color, label=name)
        ax.plot(x, [100 * r["all_share"] for r in rows], ls="--", color=color, alpha=0.5)
    ax.set_xlabel("position in window (tokens)")
    ax.set_ylabel(f"share among top {int(100 * result['top'])}% by delta (%)")
    ax.set_title("Token types whose next-token score changes most (H' - H); dashed: all tokens")
    ax.legend(ncol=4, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"token_types.{ext}", dpi=120)
    plt.close(fig)


def run(base_path: str, extended_path: str, data: str, out: str | Path, window: int | None = None, buckets: int = 8,
        top: float = 0.2, score: str = "logit", max_windows: int | None = 64, device: str | None = None,
        text_field: str = "text") -> dict:
    """`longrecipe analyze`: load both models, check the tokenizers match, analyze, write CSV/JSON/plots."""
    base, tok = load_model(model_dirs.resolve(base_path), device=device)
    ext, tok2 = load_model(model_dirs.resolve(extended_path), device=device)
    if not same_tokenizer(tok, tok2):
        raise ValueError("the base and extended models use different tokenizers: the analysis compares "
                         "next-token scores position by position, so they must share one")
    if score not in ("logit", "logprob"):
        raise ValueError(f"score must be logit or logprob, got {score!r}")
    texts = corpus.load_texts(data, text_field)
    window = window or int(ext.config.max_position_embeddings)
    result = analyze(base, ext, tok, texts, window, buckets, top, score, max_windows=max_windows)
    result.update({"base": str(base_path), "extended": str(extended_path), "data": data})
    with atomic_dir(out) as tmp:
        write_json(tmp / "token_types.json", result)
        pd.DataFrame(result["rows"]).to_csv(tmp / "token_types.csv", index=False)
        plot(result, tmp)
    return result
