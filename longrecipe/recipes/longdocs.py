"""Long training documents for the toy-scale study: retrieval documents in the base model's own formats, as JSONL.

Why retrieval documents: the paper extends models on long natural documents, whose long-range dependencies teach
a model to use a longer window. Python's own prose has few such dependencies, so a tiny model extended on it alone
has nothing to learn at long range (and loses the retrieval it had: issue #17). These documents carry explicit
ones, in the formats the base model retrieves in: key-value needles ("One of the special magic numbers for KEY is:
VALUE.") and a pass key in filler text (RULER's noise, Python prose, random words), each asked about later, each
question followed by its answer. What makes them teach retrieval at every length of the target window:
- needle-to-question distances drawn uniformly over the whole target window (not "shortly after the needle");
- the answers carry most of the loss (`loss_spans`): every answer is a target, and only a few prose sentences
  are (`prose_weight` prose target tokens per answer token), so no method is trained mostly on filler;
- every answer names its needle (`[start, end, needle_start, needle_end]`), and the trainer drops an answer from
  the loss of any row that does not hold its needle before it (train/data.py, `row_targets`): a window or a
  sentence selection that cut the needle away cannot teach guessing.
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


def _filler(rng: np.random.Generator, sentences: tuple[str, ...], words: tuple[str, ...]) -> tuple[str, bool]:
    """One filler sentence and whether it is prose: RULER's noise, a Python-doc sentence, or random words."""
    kind = int(rng.integers(3))
    if kind == 0:
        return NOISE, False
    if kind == 1:
        return sentences[int(rng.integers(len(sentences)))], True
    chosen = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(4, 12)))]
    return " ".join(chosen).capitalize() + ".", False


def retrieval_document(tokenizer: Any, min_tokens: int, rng: np.random.Generator, target: int | None = None,
                       needle_every: int = 100, questions: int = 3, prose_weight: float = 0.1
                       ) -> tuple[str, list[list[int]]]:
    """At least `min_tokens` tokens of filler with a needle every ~`needle_every` tokens (one of them the pass
    key), each asked about `questions` times (the pass key once more) at distances ~ U(16, `target`) tokens after
    it, counted in the document's own tokens (questions that would fall past the end are dropped). Returns the
    text and its loss spans: per answer [start, end, needle_start, needle_end] (character offsets of the answer
    "1234567." and of its needle), and [start, end] for the prose sentences chosen as targets (~`prose_weight`
    prose tokens per answer token)."""
    target = target or min_tokens
    sentences, words = corpus.sentences(), corpus.words()
    ntok = lambda t: len(tokenizer(" " + t, add_special_tokens=False)["input_ids"])  # noqa: E731
    parts: list[tuple[str, int, bool]] = []  # (text, needle id | -1 - needle id for a question | FILL, prose?)
    due: list[tuple[int, int, str]] = []  # (token offset, needle id, question) not yet placed
    at, placed, pk = 0, 0, None
    pk_from = int(rng.integers(0, max(1, min_tokens - 64)))  # the first needle from this token on is the pass key
    while at < min_tokens:
        due.sort()
        while due and due[0][0] <= at:
            _, j, text = due.pop(0)
            parts.append((text, -1 - j, False))
            at += ntok(text)
        is_pk = pk is None and at >= pk_from
        if is_pk or rng.random() < 30 / needle_every:  # ~one needle per needle_every tokens of ~30-token pieces
            needle, query = _needle(rng, words, is_pk)
            pk = placed if is_pk else pk
            parts.append((needle, placed, False))
            at += ntok(needle)
            for _ in range(questions + is_pk):
                due.append((at + int(rng.integers(16, max(17, target - 48))), placed, query))
            placed += 1
        text, prose = _filler(rng, sentences, words)
        parts.append((text, FILL, prose))
        at += ntok(text)
    return _join(parts, rng, prose_weight, ntok)


FILL = 10**9  # the part id of filler


def _needle(rng: np.random.Generator, words: tuple[str, ...], is_passkey: bool) -> tuple[str, str]:
    """(needle, its question with the answer) in the base model's formats."""
    if is_passkey:
        key = str(rng.integers(10_000, 100_000))
        return passkey.NEEDLE.format(key=key), PK_QUERY.format(key=key)
    key = f"{words[int(rng.integers(len(words)))]}-{words[int(rng.integers(len(words)))]}"
    value = str(rng.integers(1_000_000, 10_000_000))
    return KV_NEEDLE.format(key=key, value=value), KV_QUERY.format(key=key, value=value)


def _join(parts: list[tuple[str, int, bool]], rng: np.random.Generator, prose_weight: float, ntok: Any
          ) -> tuple[str, list[list[int]]]:
    """The parts joined by spaces and the loss spans (see retrieval_document)."""
    spans: list[list[int]] = []
    needle_at: dict[int, tuple[int, int]] = {}
    prose: list[tuple[int, int, str]] = []
    at, answer_tokens = 0, 0
    for text, j, is_prose in parts:
        end = at + len(text)
        if 0 <= j < FILL:
            needle_at[j] = (at, end)
        elif j < 0:
            a = text.rstrip(".").rfind(" ") + 1 + at
            spans.append([a, end, *needle_at[-1 - j]])
            answer_tokens += ntok(text[a - at:])
        elif is_prose:
            prose.append((at, end, text))
        at = end + 1
    budget = prose_weight * answer_tokens
    for k in rng.permutation(len(prose)):
        a, b, text = prose[int(k)]
        n = ntok(text)
        if n <= budget:
            spans.append([a, b])
            budget -= n
    return " ".join(t for t, _, _ in parts), sorted(spans)


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
                 seed: int = 0, target: int | None = None, prose_docs: bool = False) -> dict[str, int]:
    """JSONL of {"text", "kind", "loss_spans"} retrieval documents of at least `min_tokens` tokens (atomic); with
    `prose_docs`, also every prose document of the Python corpus (every token a target)."""
    rng = np.random.default_rng(seed)
    margin = min_tokens + min_tokens // 8  # room for every method's window at any offset
    rows = [{"text": t, "kind": "prose"} for t in prose_documents(tokenizer, margin)] if prose_docs else []
    for _ in range(retrieval_docs):
        text, spans = retrieval_document(tokenizer, margin, rng, target=target or min_tokens)
        rows.append({"text": text, "kind": "retrieval", "loss_spans": spans})
    write_text(Path(path), "".join(json.dumps(r) + "\n" for r in rows))
    return {"prose": sum(r["kind"] == "prose" for r in rows), "retrieval": retrieval_docs}
