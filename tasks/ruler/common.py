"""Shared pieces of the RULER generators: sources, random values, sentence splitting, length fitting.

Fidelity notes (deliberate deviations from NVIDIA/RULER, each for being offline and deterministic):
- Sentences: RULER splits essays with NLTK's punkt model, which needs a download; we split after '.', '!' or '?'
  followed by whitespace (punkt also keeps abbreviations such as "Mr." together; essays rarely differ).
- Fitting: RULER binary-searches one haystack size per task with random draws that change between probes, then
  shrinks per sample by a fixed increment; we draw each sample's random content once (seeded by task, length,
  seed and index) and binary-search its own haystack size, so every sample is as long as its budget allows.
- Token counts include the special tokens the tokenizer adds (e.g. BOS): what the model really reads. RULER
  counts `tokenizer.tokenize(text)`, one token fewer with a BOS tokenizer.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from longrecipe.base import corpus
from longrecipe.base.corpus import SourceError, essay_text  # noqa: F401  (part of this module's API)
from longrecipe.tasks import counting
from longrecipe.tasks.counting import count_tokens  # exact; additive over junctions when certified

NOISE = corpus.FILLER
# RULER inserts needles at depths drawn from 40 evenly spaced percentages.
DEPTHS = [int(d) for d in np.round(np.linspace(0, 100, num=40, endpoint=True)).astype(int)]
_SENT = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text.strip()) if s]


@functools.lru_cache(maxsize=8)
def essay_words(essay_dir: str | None) -> tuple[str, ...]:
    """The essay haystack as RULER builds it: whitespace collapsed, split on spaces."""
    return tuple(re.sub(r"\s+", " ", essay_text(essay_dir)).split(" "))


@functools.lru_cache(maxsize=8)
def source_hash(essay_dir: str | None) -> str:
    words = essay_words(essay_dir)
    return hashlib.sha256(" ".join(words).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def essay_sentences(essay_dir: str | None, n: int) -> tuple[str, ...]:
    """Sentences of the first n haystack words (repeated when n exceeds the essays): shared by every sample.
    = split_sentences(" ".join(first n words)), read off the sentences of all the words (a fitting search asks
    for many n; splitting each prefix anew cost a millisecond per probe)."""
    words = essay_words(essay_dir)
    if n > len(words):
        return tuple(split_sentences(" ".join((words * (n // len(words) + 1))[:n])))
    if n < 1:
        return ()
    full, starts, stops, ends = _essay_layout(essay_dir)
    end = ends[n - 1]
    while end > 0 and full[end - 1].isspace():  # an empty last word (only at the essays' very end)
        end -= 1
    m = bisect.bisect_left(stops, end)  # sentences whose separator lies inside the prefix
    last = full[starts[m] : end] if m < len(starts) and end > starts[m] else ""
    return _essay_split(essay_dir)[:m] + ((last,) if last else ())


@functools.lru_cache(maxsize=8)
def _essay_layout(essay_dir: str | None) -> tuple[str, list[int], list[int], list[int]]:
    """All words joined; start offset of each sentence; offset of each separator (a sentence's end); offset at
    which each word ends."""
    words = essay_words(essay_dir)
    full = " ".join(words)
    starts = [len(full) - len(full.lstrip())]
    stops = []
    for sep in _SENT.finditer(full):
        if sep.start() > starts[0]:
            stops.append(sep.start())
            starts.append(sep.end())
    ends = list(itertools.accumulate((len(w) + 1 for w in words), initial=-1))[1:]
    return full, starts, stops, ends


@functools.lru_cache(maxsize=8)
def _essay_split(essay_dir: str | None) -> tuple[str, ...]:
    full, starts, stops, _ = _essay_layout(essay_dir)
    return tuple(full[a:b] for a, b in zip(starts, stops))


@functools.lru_cache(maxsize=1)
def wonderwords_lists() -> dict[str, tuple[str, ...]]:
    """nouns, adjectives and verbs from the pinned `wonderwords` package (RULER's word source)."""
    try:
        import wonderwords
    except ImportError:
        raise SourceError("RULER's word lists come from the `wonderwords` package: pip install "
                          "'longrecipe[eval]' (wonderwords==3.0.1)") from None
    assets = Path(wonderwords.__file__).parent / "assets"
    out = {}
    for name, file in (("nouns", "nounlist.txt"), ("adjs", "adjectivelist.txt"), ("verbs", "verblist.txt")):
        out[name] = tuple(w.rstrip() for w in (assets / file).read_text(encoding="utf-8").splitlines())
    return out


@functools.lru_cache(maxsize=1)
def _adjs_nouns() -> tuple[tuple[str, ...], tuple[str, ...]]:
    lists = wonderwords_lists()
    return tuple(sorted(set(lists["adjs"]))), tuple(sorted(set(lists["nouns"])))


def wonderwords_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("wonderwords")
    except metadata.PackageNotFoundError:
        return "missing"


class Draw:
    """RULER's random values from one seeded generator: 7-digit numbers, adjective-noun words, uuid4s."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        # RULER samples from sorted(set(adj-noun)); sampling adj and noun independently is the same
        # distribution without materialising ~6M pairs.
        self.adjs, self.nouns = _adjs_nouns()

    def number(self, digits: int = 7) -> str:
        return str(int(self.rng.integers(10 ** (digits - 1), 10**digits)))

    def word(self) -> str:
        adj = self.adjs[int(self.rng.integers(len(self.adjs)))]
        return f"{adj}-{self.nouns[int(self.rng.integers(len(self.nouns)))]}"

    def uuid(self) -> str:
        return str(uuid.UUID(int=int.from_bytes(self.rng.bytes(16), "big"), version=4))

    def value(self, kind: str) -> str:
        return {"numbers": self.number, "words": self.word, "uuids": self.uuid}[kind]()


def fit(build: Callable[[int], str], tokenizer: Any, budget: int, unit_tokens: float, lo: int = 1,
        hint: int | None = None, secant: bool = True) -> tuple[str, int]:
    """Largest haystack size n >= lo with tokens(build(n)) <= budget (token counts grow with n).

    A start point, up to three secant steps towards the budget, then exponential search and bisection (the
    answer does not depend on the path when token counts grow with n): the start is `hint` (the previous sample's
    size) or else a slope measured on two probes; the secant steps use `unit_tokens` as the first slope, then the
    line through the last two probes. RULER instead grows the haystack by a fixed increment from the bottom,
    re-tokenizing the whole prompt each time. `secant=False` where counts are far from monotone in n (cwe draws
    new words for every n): there the path decides which local maximum is found, and the plain search from the
    previous sample's size finds the tighter ones."""
    counts: dict[int, int] = {}
    texts: dict[int, str] = {}

    def size(n: int) -> int:
        if n not in counts:
            texts[n] = build(n)
            counts[n] = count_tokens(tokenizer, texts[n])
        return counts[n]

    def too_small() -> ValueError:
        return ValueError(f"the budget of {budget} tokens cannot hold the task's template and needles "
                          f"({size(lo)} tokens with {lo} haystack units)")

    if hint is None or hint < lo:
        if size(lo) > budget:
            raise too_small()
        probe = lo + max(1, int((budget - size(lo)) / max(unit_tokens, 1e-6)))
        slope = max((size(probe) - size(lo)) / (probe - lo), 1e-6)
        hint = lo + int((budget - size(lo)) / slope)
    start = _secant(size, max(hint, lo), budget, unit_tokens, lo) if secant else max(hint, lo)
    step = 1
    if size(start) <= budget:
        good, bad = start, None
        while bad is None:
            if size(start + step) <= budget:
                good, step = start + step, step * 2
            else:
                bad = start + step
    else:
        good, bad = None, start
        while good is None:
            cand = max(lo, start - step)
            if size(cand) <= budget:
                good = cand
            elif cand == lo:
                raise too_small()
            else:
                bad, step = cand, step * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if size(mid) <= budget else (good, mid)
    return texts[good], good


def _secant(size: Callable[[int], int], start: int, budget: int, unit_tokens: float, lo: int, steps: int = 3) -> int:
    """Jump from `start` to where the line through the last two probes (first: slope `unit_tokens`) meets the
    budget; stops when a jump lands where it started. Only a start point: the search after it is exact."""
    slope, prev = max(unit_tokens, 1e-6), None
    for _ in range(steps):
        here = size(start)
        if prev is not None:
            measured = (here - prev[1]) / (start - prev[0])
            if measured <= 0.1 * slope:  # a plateau (counts grow in steps): no usable slope, search from here
                break
            slope = measured
        nxt = start + int((budget - here) // slope)
        nxt = min(max(lo, nxt, start // 2), 2 * start + 1)  # never more than a doubling or halving per jump
        if nxt == start:
            break
        prev, start = (start, here), nxt
    return start


def sample_rng(seed: int, task: str, length: int, index: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(f"{task}:{length}".encode()).digest()[:8], "big")
    return np.random.default_rng([seed, key, index])


def record(tokenizer: Any, prompt: str, answer_prefix: str, outputs: list[str], index: int,
           tokens_to_generate: int) -> dict:
    """One sample as RULER writes it: input without the answer prefix, `length` = prompt tokens + tokens to
    generate; plus the token position of the first answer in the input and that position as a depth fraction."""
    assert prompt.endswith(answer_prefix)
    text = prompt[: len(prompt) - len(answer_prefix)]
    counter = counting.counter(tokenizer)
    total = counter.count(prompt)
    at = text.find(outputs[0])
    position = None if at < 0 else counter.position(prompt, at)
    return {"index": index, "input": text, "answer_prefix": answer_prefix, "outputs": list(outputs),
            "length": total + tokens_to_generate, "prompt_tokens": total, "max_new_tokens": tokens_to_generate,
            "answer_position": position,
            "depth": None if position is None else round(position / max(total, 1), 4)}
