"""Passkey retrieval (Mohtashami & Jaggi 2023, as used by LongLoRA and PoSE): a number hidden in filler text.

Why it is here: it is the smallest test that separates a model that can retrieve across its whole window from
one that cannot, so it is the acceptance test of the embedded tiny base model (passkey@1x and passkey@4x).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from longrecipe.tasks.counting import count_tokens

TASK_VERSION = 1
PREFIX = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
TOKENS_TO_GENERATE = 10


def build_prompt(n_filler: int, needle_index: int, key: str, filler: str = FILLER) -> str:
    """The prompt with `n_filler` filler units and the needle placed before unit `needle_index`."""
    units = [filler] * n_filler
    units.insert(needle_index, NEEDLE.format(key=key))
    return " ".join([PREFIX, *units, QUESTION])


def _fit(tokenizer: Any, budget: int, depth: float, key: str) -> tuple[str, int]:
    """Largest filler count whose prompt fits `budget` tokens (binary search: token counts grow with units)."""
    lo, hi = 0, max(1, budget)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(tokenizer, build_prompt(mid, round(depth * mid), key)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return build_prompt(lo, round(depth * lo), key), lo


def generate(
    tokenizer: Any, length: int, num_samples: int, seed: int = 0, digits: int = 5, depths: Sequence[float] | None = None
) -> list[dict]:
    """Samples whose prompt plus TOKENS_TO_GENERATE fits `length` tokens of `tokenizer`.

    Each sample records its token length, depth (0 = start, 1 = end) and the token index where the needle starts.
    """
    rng = np.random.default_rng(seed)
    budget = length - TOKENS_TO_GENERATE
    out = []
    for i in range(num_samples):
        key = str(rng.integers(10 ** (digits - 1), 10**digits))
        depth = float(depths[i % len(depths)]) if depths else float(rng.random())
        prompt, n = _fit(tokenizer, budget, depth, key)
        if (used := count_tokens(tokenizer, prompt)) > budget:
            raise ValueError(f"passkey: length {length} cannot hold the prompt (it needs at least "
                             f"{used + TOKENS_TO_GENERATE} tokens with this tokenizer, {TOKENS_TO_GENERATE} of them "
                             f"for the answer)")
        head = build_prompt(n, round(depth * n), key).split(NEEDLE.format(key=key))[0]
        out.append(
            {
                "index": i,
                "input": prompt,
                "answer_prefix": "",
                "outputs": [key],
                "length": used,
                "depth": depth,
                "answer_position": count_tokens(tokenizer, head.rstrip()),
                "max_new_tokens": TOKENS_TO_GENERATE,
            }
        )
    return out


def score(prediction: str, key: str) -> float:
    """Exact match: the first run of digits in the prediction equals the key."""
    found = re.search(r"\d+", prediction)
    return float(found is not None and found.group(0) == key)
