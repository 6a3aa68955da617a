"""RULER frequent words extraction: coded words drawn from a Zipf(alpha) law; the 3 most frequent are the answer
(the most frequent one is replaced by '...', treated as noise)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from longrecipe.tasks.ruler import common as C

TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
            "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore "
            "the dots '....'. What are the three most frequently appeared words in the above coded text?")
ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
TOKENS_TO_GENERATE = 50
CODED_WORDLEN = 6


@functools.lru_cache(maxsize=16)
def zeta(alpha: float, terms: int = 100_000) -> float:
    """Riemann zeta(alpha) for alpha > 1: partial sum plus the Euler-Maclaurin tail (error < 1e-12 here)."""
    n = terms
    head = math.fsum(k**-alpha for k in range(1, n))
    tail = n ** (1 - alpha) / (alpha - 1) + 0.5 * n**-alpha + alpha * n ** (-alpha - 1) / 12
    return head + tail


def coded_vocab(rng: np.random.Generator, size: int) -> list[str]:
    vocab: set[str] = set()
    while len(vocab) < size:  # = rng.choice(list(ascii_lowercase), 6) per word (same draws), without the list
        vocab.add(bytes(rng.integers(0, 26, size=CODED_WORDLEN).astype(np.uint8) + 97).decode())
    words = sorted(vocab)
    np.random.default_rng(size).shuffle(words)  # RULER shuffles with the fixed task seed
    words[0] = "..."  # the top-ranked word is noise
    return words


def counts(num_words: int, vocab_size: int, alpha: float) -> np.ndarray:
    """Occurrences of the k-th word: int(num_words * k**-alpha / zeta(alpha)), as RULER computes them."""
    k = np.arange(1, vocab_size + 1)
    return (num_words * (k**-alpha) / zeta(alpha)).astype(int)


def generate(args: dict[str, Any], tokenizer: Any, length: int, num_samples: int, seed: int, task: str,
             essay_dir: str | None = None, wrap=lambda s: s) -> list[dict]:
    alpha = float(args["alpha"])
    budget = length - TOKENS_TO_GENERATE
    vocab_size = args.get("vocab_size", -1)
    vocab_size = budget // 50 if vocab_size in (-1, None) else vocab_size
    out, hint = [], None
    for index in range(num_samples):
        rng = C.sample_rng(seed, task, length, index)
        vocab = coded_vocab(rng, max(vocab_size, 4))
        shuffle_seed = int(rng.integers(2**63))

        def build(n: int) -> str:
            words = [w for w, c in zip(vocab, counts(n, len(vocab), alpha)) for _ in range(c)]
            np.random.default_rng([shuffle_seed, n]).shuffle(words)
            return wrap(TEMPLATE.format(context=" ".join(words))) + ANSWER_PREFIX

        prompt, hint = C.fit(build, tokenizer, budget, C.count_tokens(tokenizer, " abcdef"), lo=1, hint=hint)
        rec = C.record(tokenizer, prompt, ANSWER_PREFIX, vocab[1:4], index, TOKENS_TO_GENERATE)
        rec["answer_position"], rec["depth"] = None, None
        out.append(rec)
    return out
