"""Long training documents for the toy-scale study: Python prose plus retrieval documents, as JSONL.

Why retrieval documents: the paper extends models on long natural documents, whose long-range dependencies teach
a model to use a longer window. Python's own prose has few such dependencies, so a tiny model extended on it alone
has nothing to learn at long range. These documents carry explicit ones: key-value needles ("One of the special
magic numbers for KEY is: VALUE.", RULER's form) and a pass key spread through filler text, and questions about
earlier needles, each followed by its answer, at every distance. Every window or sentence selection of a document
keeps some question-answer pairs whose needle it also keeps, so each method can learn from what it sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from longrecipe.base import corpus
from longrecipe.base.io import write_text
from longrecipe.recipes.tinybase import KV_NEEDLE, KV_QUESTION, NOISE  # the formats the base model retrieves in
from longrecipe.tasks import passkey

KV_QUERY = KV_QUESTION + " {value}."
PK_QUERY = passkey.QUESTION + " {key}."


def _filler(rng: np.random.Generator, sentences: tuple[str, ...], words: tuple[str, ...]) -> str:
    """One filler sentence: RULER's noise, a Python-doc sentence, or random words (as in the base model's mix)."""
    kind = int(rng.integers(3))
    if kind == 0:
        return NOISE
    if kind == 1:
        return sentences[int(rng.integers(len(sentences)))]
    chosen = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(4, 12)))]
    return " ".join(chosen).capitalize() + "."


def retrieval_document(tokenizer: Any, min_tokens: int, rng: np.random.Generator, needle_every: int = 400,
                       query_prob: float = 1.0) -> tuple[str, list[list[int]]]:
    """Filler with a needle every ~`needle_every` tokens (one of them a pass key); after each needle, with
    probability `query_prob` per filler sentence, a question about a random earlier needle and its answer.
    Returns the text and the character spans of the answers (the digits after each question)."""
    sentences, words = corpus.sentences(), corpus.words()
    parts: list[str] = []
    answers: list[int] = []  # indices of the query parts
    placed: list[tuple[str, str]] = []  # (query with answer) per needle placed so far
    count = lambda: len(tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"])  # noqa: E731
    needles = max(2, min_tokens // needle_every)
    per_needle = max(1, needle_every // 35)  # filler sentences (~30 tokens each) between needles
    pk_at = int(rng.integers(needles))
    i = 0
    while True:
        if i < needles:
            if i == pk_at:
                key = str(rng.integers(10_000, 100_000))
                parts.append(passkey.NEEDLE.format(key=key))
                placed.append((PK_QUERY.format(key=key), key))
            else:
                key = f"{words[int(rng.integers(len(words)))]}-{words[int(rng.integers(len(words)))]}"
                value = str(rng.integers(1_000_000, 10_000_000))
                parts.append(KV_NEEDLE.format(key=key, value=value))
                placed.append((KV_QUERY.format(key=key, value=value), value))
            i += 1
        for _ in range(per_needle):
            parts.append(_filler(rng, sentences, words))
            if placed and rng.random() < query_prob / per_needle:
                parts.append(placed[int(rng.integers(len(placed)))][0])
                answers.append(len(parts) - 1)
        if i >= needles and count() >= min_tokens:
            return _join(parts, answers)


def _join(parts: list[str], answers: list[int]) -> tuple[str, list[list[int]]]:
    """The parts joined by spaces, and the span of the answer ("1234567.") that ends each query part."""
    spans, at = [], 0
    queries = set(answers)
    for k, part in enumerate(parts):
        if k in queries:
            end = at + len(part)
            start = part.rstrip(".").rfind(" ") + 1 + at
            spans.append([start, end])
        at += len(part) + 1
    return " ".join(parts), spans


def prose_documents(tokenizer: Any, min_tokens: int) -> list[str]:
    """The Python corpus cut at paragraph boundaries into documents of at least `min_tokens` tokens."""
    docs, cur, n = [], [], 0
    for p in corpus.paragraphs():
        cur.append(p)
        n += len(tokenizer(p, add_special_tokens=False)["input_ids"]) + 1
        if n >= min_tokens:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    return docs


def write_corpus(path: str | Path, tokenizer: Any, min_tokens: int, retrieval_docs: int = 256,
                 seed: int = 0, answers_only: bool = True) -> dict[str, int]:
    """JSONL of {"text", "kind"} rows: every prose document and `retrieval_docs` retrieval documents (atomic).
    With `answers_only`, retrieval rows carry `loss_spans` (their answers): as in the base model's training, the
    loss of a retrieval document is on what can only be predicted by retrieving, not on its random filler."""
    rng = np.random.default_rng(seed)
    margin = min_tokens + min_tokens // 8  # room for PoSE's and FLT's windows at any offset
    prose = prose_documents(tokenizer, margin)
    rows = [{"text": t, "kind": "prose"} for t in prose]
    for _ in range(retrieval_docs):
        text, spans = retrieval_document(tokenizer, margin, rng)
        rows.append({"text": text, "kind": "retrieval", **({"loss_spans": spans} if answers_only else {})})
    write_text(Path(path), "".join(json.dumps(r) + "\n" for r in rows))
    return {"prose": len(prose), "retrieval": retrieval_docs}
