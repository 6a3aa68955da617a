"""Long training documents for the toy-scale study: retrieval documents in the base model's own formats, as JSONL.

Why retrieval documents: the paper extends models on long natural documents, whose long-range dependencies teach
a model to use a longer window. Python's own prose has few such dependencies, so a tiny model extended on it alone
has nothing to learn at long range (and loses the retrieval it had: issue #17). These documents carry explicit
ones, in the formats the base model retrieves in: key-value needles ("One of the special magic numbers for KEY
is: VALUE.") and a pass key in filler text (RULER's noise, Python prose, random words), asked about at the end of
their episode, each question followed by its answer. What makes them teach retrieval at every length of the target
window:
- episodes (instruction, filler with the needles, the questions, their answers: the base model's own rows) whose
  first needle stands a uniformly drawn distance (up to the target) before the questions, so needle-to-question
  distances cover the whole target window;
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
from longrecipe.recipes.tinybase import (  # the formats the base model retrieves in
    KV_INTRO,
    KV_NEEDLE,
    KV_QUESTION,
    NOISE,
)
from longrecipe.tasks import passkey

KV_QUERY = KV_QUESTION + " {value}."
PK_QUERY = passkey.QUESTION + " {key}."


def _filler(rng: np.random.Generator, kind: int, sentences: tuple[str, ...],
            words: tuple[str, ...]) -> tuple[str, bool]:
    """One filler sentence of `kind` and whether it is prose: RULER's noise (0), a Python-doc sentence (1), or
    random words (2), the base model's three fillers."""
    if kind == 0:
        return NOISE, False
    if kind == 1:
        return sentences[int(rng.integers(len(sentences)))], True
    chosen = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(4, 12)))]
    return " ".join(chosen).capitalize() + ".", False


def retrieval_document(tokenizer: Any, min_tokens: int, rng: np.random.Generator, target: int | None = None,
                       shortest: int = 48, prose_weight: float = 0.1) -> tuple[str, list[list[int]]]:
    """At least `min_tokens` tokens of retrieval episodes, each in one of the base model's own row formats: a pass
    key (its instruction, filler, the needle, filler, the question, the answer) or 1-4 key-value needles (their
    instruction, filler with the needles, a question about each, the answers). Each episode's first needle stands
    ~d tokens before its questions, d ~ U(`shortest`, `target` - 100), so needle-to-question distances cover the
    whole target window (its other needles fall in between).
    Returns the text and its loss spans: per answer [start, end, needle_start, needle_end] (character offsets of
    the answer "1234567." and of the needle it is retrieved from), and [start, end] for the prose sentences chosen
    as targets (~`prose_weight` prose tokens per answer token)."""
    target = target or min_tokens
    sentences, words = corpus.sentences(), corpus.words()
    ntok = lambda t: len(tokenizer(" " + t, add_special_tokens=False)["input_ids"])  # noqa: E731
    parts: list[tuple[str, int, bool]] = []  # (text, needle id | -1 - needle id for a question | FILL, prose?)
    at, episodes = 0, 0
    while at < min_tokens:
        at += _episode(parts, rng, int(rng.integers(shortest, max(shortest + 1, target - 100))), episodes,
                       sentences, words, ntok)
        episodes += 1
    return _join(parts, rng, prose_weight, ntok)


def _episode(parts: list, rng: np.random.Generator, length: int, ident: int, sentences: tuple[str, ...],
             words: tuple[str, ...], ntok: Any) -> int:
    """Append one episode to `parts` whose first needle starts ~`length` tokens before its questions; returns the
    episode's token count."""
    kind = int(rng.integers(3))
    if rng.random() < 0.5:
        key = str(rng.integers(10 ** (d := int(rng.integers(4, 8))) // 10, 10**d))
        head, needles, asks = passkey.PREFIX, [passkey.NEEDLE.format(key=key)], [PK_QUERY.format(key=key)]
    else:  # every needle asked about, in a random order (the base's rows ask one; more answers per token here)
        pairs = rng.integers(len(words), size=(int(rng.integers(1, 5)), 2))
        keys = [f"{words[int(i)]}-{words[int(j)]}" for i, j in pairs]
        values = [str(rng.integers(1_000_000, 10_000_000)) for _ in keys]
        head, needles = KV_INTRO, [KV_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values)]
        asks = [KV_QUERY.format(key=keys[i], value=values[i]) for i in range(len(keys))]
    def fill(tokens: int) -> list[tuple[str, bool]]:
        out, n = [], 0
        while n < tokens:
            out.append(_filler(rng, kind, sentences, words))
            n += ntok(out[-1][0])
        return out

    # needle 0 starts the span of `length` tokens that ends at the questions: its distance is ~ `length`
    before, after = fill(int(rng.integers(0, 33))), fill(length - sum(map(ntok, needles)))
    slots = sorted(int(x) for x in rng.integers(0, len(after) + 1, size=len(needles) - 1))
    base = 8 * ident  # needle i of this episode has id base + i (at most 4 needles)
    parts.append((head, FILL, False))
    parts += [(t, FILL, prose) for t, prose in before]
    parts.append((needles[0], base, False))
    others = iter(rng.permutation(np.arange(1, len(needles))))
    for k, sentence in enumerate(after + [None]):
        for _ in range(slots.count(k)):
            i = int(next(others))
            parts.append((needles[i], base + i, False))
        if sentence is not None:
            parts.append((sentence[0], FILL, sentence[1]))
    for i in rng.permutation(len(asks)):
        parts.append((asks[int(i)], -1 - (base + int(i)), False))
    return sum(ntok(t) for t in [head, *needles, *asks]) + sum(ntok(t) for t, _ in before + after)


FILL = 10**9  # the part id of filler


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


def write_corpus(path: str | Path, tokenizer: Any, min_tokens: int, retrieval_docs: int = 256,
                 seed: int = 0, target: int | None = None) -> dict[str, int]:
    """JSONL of {"text", "kind", "loss_spans"} retrieval documents of at least `min_tokens` tokens (atomic)."""
    rng = np.random.default_rng(seed)
    margin = min_tokens + min_tokens // 8  # room for every method's window at any offset
    rows = []
    for _ in range(retrieval_docs):
        text, spans = retrieval_document(tokenizer, margin, rng, target=target or min_tokens)
        rows.append({"text": text, "kind": "retrieval", "loss_spans": spans})
    write_text(Path(path), "".join(json.dumps(r) + "\n" for r in rows))
    return {"retrieval": retrieval_docs}
