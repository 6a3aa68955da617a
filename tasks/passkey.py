"""Passkey retrieval (Mohtashami & Jaggi 2023, as used by LongLoRA and PoSE): a number hidden in filler text.

Why it is here: it is the smallest test that separates a model that can retrieve across its whole window from
one that cannot, so it is the acceptance test of the embedded tiny base model (passkey@1x and passkey@4x).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longrecipe.base import corpus
from longrecipe.base.schema import ScoreRow
from longrecipe.tasks import chat
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1
PREFIX = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there."
)
FILLER = corpus.FILLER
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
ASK = "What is the pass key?"
ANSWER_PREFIX = " The pass key is"
QUESTION = ASK + ANSWER_PREFIX
TOKENS_TO_GENERATE = 10


def build_prompt(n_filler: int, needle_index: int, key: str, filler: str = FILLER,
                 wrap: Callable[[str], str] | None = None) -> str:
    """The prompt with `n_filler` filler units and the needle placed before unit `needle_index`; with `wrap` (a
    chat template) the question is the user turn and the answer prefix opens the assistant's."""
    units = [filler] * n_filler
    units.insert(needle_index, NEEDLE.format(key=key))
    if wrap is None:
        return " ".join([PREFIX, *units, QUESTION])
    return wrap(" ".join([PREFIX, *units, ASK])) + ANSWER_PREFIX.lstrip()


def _fit(tokenizer: Any, budget: int, depth: float, key: str, wrap=None) -> tuple[str, int]:
    """Largest filler count whose prompt fits `budget` tokens (binary search: token counts grow with units)."""
    lo, hi = 0, max(1, budget)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(tokenizer, build_prompt(mid, round(depth * mid), key, wrap=wrap)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return build_prompt(lo, round(depth * lo), key, wrap=wrap), lo


def generate(tokenizer: Any, length: int, num_samples: int, seed: int = 0, digits: int = 5,
             depths: Sequence[float] | None = None, chat_template: bool = False) -> list[dict]:
    """Samples whose prompt plus TOKENS_TO_GENERATE fits `length` tokens of `tokenizer`.

    Each sample records its token length, depth (0 = start, 1 = end) and the token index where the needle starts.
    """
    rng = np.random.default_rng(seed)
    budget = length - TOKENS_TO_GENERATE
    wrap = chat.wrapper(tokenizer) if chat_template else None
    out = []
    for i in range(num_samples):
        key = str(rng.integers(10 ** (digits - 1), 10**digits))
        depth = float(depths[i % len(depths)]) if depths else float(rng.random())
        prompt, n = _fit(tokenizer, budget, depth, key, wrap)
        if (used := count_tokens(tokenizer, prompt)) > budget:
            raise ValueError(f"passkey: length {length} cannot hold the prompt (it needs at least "
                             f"{used + TOKENS_TO_GENERATE} tokens with this tokenizer, {TOKENS_TO_GENERATE} of them "
                             f"for the answer)")
        head = prompt.split(NEEDLE.format(key=key))[0]
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


@dataclass(frozen=True)
class PasskeyOptions:
    chat_template: bool = option(False, key="chat_template")


class Passkey(TaskBase):
    """Passkey retrieval at each length: one exact-match row per length."""

    name, version, Options = "passkey", TASK_VERSION, PasskeyOptions
    view = View(columns=(Column("passkey"),),
                tables=(Table("passkey_by_length", "Passkey retrieval (exact match) by context length"),),
                plots=(Plot("passkey_vs_length", "passkey exact match"),))

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: PasskeyOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        made = generate(tokenizer, length, n, seed, chat_template=options.chat_template)
        return [Sample.from_dict(d, "passkey", length) for d in made]

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        values = [100 * score(p, s.references[0]) for p, s in zip(predictions, samples)]
        nulls = sum(not p.strip() for p in predictions)  # empty answers, as RULER counts its Nulls
        return [ScoreRow("passkey", "passkey", "exact_match", sum(values) / len(values), self.version,
                         samples[0].context_length, None, len(values), nulls)]


TASK = Passkey()
