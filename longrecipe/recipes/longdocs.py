"""Long training documents for the toy-scale study: retrieval documents in the base model's own formats, as JSONL.

Why retrieval documents: the paper extends models on long natural documents, whose long-range dependencies teach
a model to use a longer window. Python's own prose has few such dependencies, so a tiny model extended on it alone
has nothing to learn at long range (and loses the retrieval it had: issue #17). These documents carry explicit
ones, in the formats the base model (v2) retrieves in: a pass key, or key-value needles in RULER's needle sentence
("One of the special magic {numbers|words|uuids} for KEY is: VALUE.", keys word pairs or uuids) asked one key at a
time, all values of one key at once (in context order) or several keys at once, in filler text (RULER's noise,
Python prose, random words, or distractor needles never asked about), each question followed by its answer. They
are not RULER's prompts (one episode after another in one document, the base's own fillers, fresh content from our
own draws); without the uuid, word, multi-value and multi-query episodes an extended v2 lost those variants even at
512 (FLT: niah_single_3 100 -> 20, multikey_3 -> 0; RESULTS.md). What makes them teach retrieval at every length of
the target window:
- episodes (instruction, filler with the needles, the questions, their answers: the base model's own rows) whose
  first needle stands a uniformly drawn distance (up to the target) before the questions, so needle-to-question
  distances cover the whole target window;
- the answers carry most of the loss (`loss_spans`): every answer is a target, and only a few prose sentences
  are (`prose_weight` prose target tokens per answer token), so no method is trained mostly on filler;
- every answer value names its needle (`[start, end, needle_start, needle_end]`; a multi-value answer is one span
  per value), and the trainer drops an answer value from the loss of any row that does not hold its needle before
  it (train/data.py, `row_targets`): a window or a sentence selection that cut the needle away cannot teach
  guessing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from longrecipe.base import corpus
from longrecipe.base.io import write_text
from longrecipe.tasks import passkey
from longrecipe.tasks.kv_format import NOISE  # the formats the base model retrieves in
from longrecipe.tasks.kv_format import RULER_QUESTION as QUESTION
from longrecipe.tasks.ruler import ruler_niah

INTRO = ruler_niah.TEMPLATE.split("\n", 1)[0]  # "Some special magic {type_needle_v} are hidden ... afterwards."


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
    instruction, filler with the needles, the questions and answers: `_kv_episode`). Each episode's first needle stands
    ~d tokens before its questions, d ~ U(`shortest`, `target` - 100), so needle-to-question distances cover the
    whole target window (its other needles fall in between).
    Returns the text and its loss spans: per answer value [start, end, needle_start, needle_end] (character offsets
    of " value" with its "." or "," and of the needle it is retrieved from), and [start, end] for the prose chosen
    as targets (~`prose_weight` prose tokens per answer token)."""
    target = target or min_tokens
    sentences, words = corpus.sentences(), corpus.words()
    ntok = lambda t: len(tokenizer(" " + t, add_special_tokens=False)["input_ids"])  # noqa: E731
    # (text, needle id | FILL | (question chars, ((value, needle id), ...)) for an ask, prose?)
    parts: list[tuple[str, Any, bool]] = []
    at, episodes = 0, 0
    while at < min_tokens:
        at += _episode(parts, rng, int(rng.integers(shortest, max(shortest + 1, target - 100))), episodes,
                       sentences, words, ntok)
        episodes += 1
    return _join(parts, rng, prose_weight, ntok)


KINDS = ("numbers", "words", "uuids")  # the value kinds of RULER's needle sentence, all in the base's rows


def _value(rng: np.random.Generator, kind: str, words: tuple[str, ...]) -> str:
    """A fresh value of `kind` (training content: our own word list and draws, never the evaluation's)."""
    if kind == "numbers":
        return str(rng.integers(1_000_000, 10_000_000))
    if kind == "words":
        return words[int(rng.integers(len(words)))]
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _kv_episode(rng: np.random.Generator, words: tuple[str, ...]) -> tuple[str, list[str], list, Any]:
    """A key-value episode in one of the base's needle formats (RULER's needle sentence; every NIAH variant the base
    solves at its window): `single` (1-4 keys, each asked alone), `multivalue` (one key with 2-4 values, asked
    once, the values in context order) or `multiquery` (2-4 keys asked in one question); values numbers, words or
    uuids, keys word pairs or uuids. Returns the instruction, the needles, the asks (question, [(value, needle
    index)], answered in context order?) and a maker of distractor needles (same kind, keys never asked)."""
    kind = KINDS[int(rng.integers(3))]
    uuid_keys = rng.random() < 0.25
    key = lambda: (_value(rng, "uuids", words) if uuid_keys  # noqa: E731
                   else f"{words[int(rng.integers(len(words)))]}-{words[int(rng.integers(len(words)))]}")
    form = ("single", "multivalue", "multiquery")[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    n = int(rng.integers(2, 5)) if form != "single" else int(rng.integers(1, 5))
    keys = [key()] if form == "multivalue" else [key() for _ in range(n)]
    pairs = [(keys[0], _value(rng, kind, words)) for _ in range(n)] if form == "multivalue" else \
        [(k, _value(rng, kind, words)) for k in keys]
    needles = [ruler_niah.NEEDLE.format(type_needle_v=kind, key=k, value=v) for k, v in pairs]
    one = ruler_niah.singular(QUESTION).format(type_needle_v=kind[:-1], query="{query}")
    many = QUESTION.format(type_needle_v=kind, query="{query}")
    if form == "single":
        asks = [(one.format(query=k), [(v, i)], False) for i, (k, v) in enumerate(pairs)]
    elif form == "multivalue":  # answered in context order (fixed when the needles are placed), as the base learned
        asks = [(many.format(query=keys[0]), [(v, i) for i, (_, v) in enumerate(pairs)], True)]
    else:  # RULER's multiquery: the keys joined "a, b, and c", the values in the order of the keys
        query = ", ".join(keys[:-1]) + ", and " + keys[-1]
        asks = [(many.format(query=query), [(v, i) for i, (_, v) in enumerate(pairs)], False)]
    head = INTRO.format(type_needle_v=kind)

    def distractor() -> str:
        return ruler_niah.NEEDLE.format(type_needle_v=kind, key=key(), value=_value(rng, kind, words))

    return head, needles, asks, distractor


def _episode(parts: list, rng: np.random.Generator, length: int, ident: int, sentences: tuple[str, ...],
             words: tuple[str, ...], ntok: Any) -> int:
    """Append one episode to `parts` whose first needle starts ~`length` tokens before its questions; returns the
    episode's token count."""
    kind = int(rng.integers(4))  # filler: RULER's noise, prose, random words, or distractor needles (key-value)
    if rng.random() < 0.3:
        key = str(rng.integers(10 ** (d := int(rng.integers(4, 8))) // 10, 10**d))
        head, needles = passkey.PREFIX, [passkey.NEEDLE.format(key=key)]
        asks, distractor = [(passkey.QUESTION, [(key, 0)], False)], None
        kind = min(kind, 2)
    else:
        head, needles, asks, distractor = _kv_episode(rng, words)

    def fill(tokens: int) -> list[tuple[str, bool]]:
        out, n = [], 0
        while n < tokens:
            out.append((distractor(), False) if kind == 3 else _filler(rng, kind, sentences, words))
            n += ntok(out[-1][0])
        return out

    # needle 0 starts the span of `length` tokens that ends at the questions: its distance is ~ `length`
    before, after = fill(int(rng.integers(0, 33))), fill(length - sum(map(ntok, needles)))
    slots = sorted(int(x) for x in rng.integers(0, len(after) + 1, size=len(needles) - 1))
    base = 8 * ident  # needle i of this episode has id base + i (at most 4 needles)
    parts.append((head, FILL, False))
    parts += [(t, FILL, prose) for t, prose in before]
    parts.append((needles[0], base, False))
    order = [0]
    others = iter(rng.permutation(np.arange(1, len(needles))))
    for k, sentence in enumerate(after + [None]):
        for _ in range(slots.count(k)):
            i = int(next(others))
            order.append(i)
            parts.append((needles[i], base + i, False))
        if sentence is not None:
            parts.append((sentence[0], FILL, sentence[1]))
    for i in rng.permutation(len(asks)):
        question, answers, ordered = asks[int(i)]
        answers = sorted(answers, key=lambda a: order.index(a[1])) if ordered else answers
        text = question + " " + ", ".join(v for v, _ in answers) + "."
        parts.append((text, (len(question), tuple((v, base + j) for v, j in answers)), False))
    return (ntok(head) + sum(ntok(t) for t, _, _ in parts[-len(asks):]) + sum(map(ntok, needles))
            + sum(ntok(t) for t, _ in before + after))


FILL = 10**9  # the part id of filler


def _join(parts: list[tuple[str, Any, bool]], rng: np.random.Generator, prose_weight: float, ntok: Any
          ) -> tuple[str, list[list[int]]]:
    """The parts joined by spaces and the loss spans (see retrieval_document): an ask's answer is one span per
    value (" value" with the ',' or '.' after it), each tied to the needle that holds that value."""
    spans: list[list[int]] = []
    needle_at: dict[int, tuple[int, int]] = {}
    prose: list[tuple[int, int, str]] = []
    at, answer_tokens = 0, 0
    for text, tag, is_prose in parts:
        end = at + len(text)
        if isinstance(tag, tuple):  # an ask: the question, then " value" joined by "," and a "."
            a = at + tag[0]
            for value, j in tag[1]:  # the space is part of the target: the model must learn to start the answer
                spans.append([a, a + len(value) + 2, *needle_at[j]])
                answer_tokens += ntok(value + ".")
                a += len(value) + 2
        elif 0 <= tag < FILL:
            needle_at[tag] = (at, end)
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
