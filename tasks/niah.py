"""Needle in a Haystack (gkamradt/LLMTest_NeedleInAHaystack): one fact hidden at a grid of depths and lengths.

Faithful to the original: lengths and depths by linspace (35 x 35 by default, depths rounded to integers), the
haystack = the essays concatenated and repeated until long enough, trimmed in tokens to the context length, the
needle inserted at the end of the sentence before the depth's token position (back to the previous '.' token),
a 200-token buffer (haystack + needle = length - 200 tokens) for the question and the answer, the original
system and question messages; multi-needle insertion as in its multi-needle tester.
Deviations: the original grades answers with an LLM (1-10); we score by case-insensitive substrings of the
reference fragments (fraction found, 0-100). Essay files are read in sorted order (the original uses glob order).
Without a chat template the messages are joined by blank lines and `answer_prefix` (default none) is appended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longrecipe.base import corpus, downloads
from longrecipe.base.schema import ScoreRow
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.views import View

TASK_VERSION = 1
NEEDLE = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n"
QUESTION = "What is the best thing to do in San Francisco?"
REFERENCES = ("eat a sandwich", "Dolores Park")
SYSTEM = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct"
QUESTION_SUFFIX = " Don't give information outside the document or repeat your findings"
MULTI_NEEDLES = (
    " Figs are one of the secret ingredients needed to build the perfect pizza. ",
    " Prosciutto is one of the secret ingredients needed to build the perfect pizza. ",
    " Goat cheese is one of the secret ingredients needed to build the perfect pizza. ",
)
BUFFER = 200
TOKENS_TO_GENERATE = 64


def default_lengths(lo: int = 1000, hi: int = 16000, n: int = 35) -> list[int]:
    return [int(x) for x in np.round(np.linspace(lo, hi, num=n, endpoint=True)).astype(int)]


def default_depths(lo: int = 0, hi: int = 100, n: int = 35) -> list[int]:
    return [int(x) for x in np.round(np.linspace(lo, hi, num=n, endpoint=True)).astype(int)]


def _encode(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def haystack_tokens(tok: Any, essay_dir: str | None, max_length: int) -> list[int]:
    """The essays (or the built-in Python text), concatenated and repeated until `max_length` tokens."""
    unit = _encode(tok, corpus.essay_text(essay_dir))
    return (unit * (max_length // max(len(unit), 1) + 1))[:max_length]


def insert(tok: Any, context: list[int], needles: Sequence[str], depth: float, length: int) -> tuple[list[int], int]:
    """Insert needles as the original does; returns the tokens and where the first needle starts."""
    period = set(_encode(tok, "."))
    budget = length - BUFFER
    needle_ids = [_encode(tok, n) for n in needles]
    total = sum(map(len, needle_ids))
    if len(context) + total > budget:
        context = context[: max(0, budget - total)]
    step = (100 - depth) / len(needles)
    first = None
    for ids in needle_ids:
        if depth == 100:
            point = len(context)
        else:
            point = int(len(context) * (depth / 100))
            while point > 0 and context[point - 1] not in period:
                point -= 1
        context = context[:point] + ids + context[point:]
        first = point if first is None else first
        depth += step
    return context, first or 0


def generate(tokenizer: Any, lengths: Sequence[int] | None = None, depths: Sequence[float] | None = None,
             essay_dir: str | None = None, needles: Sequence[str] = (NEEDLE,), question: str = QUESTION,
             references: Sequence[str] = REFERENCES, chat_template: bool = False,
             answer_prefix: str = "") -> list[dict]:
    """One sample per (length, depth): input, answer_prefix, outputs (reference fragments), length (tokens of
    the prompt), depth (percent), answer_position (token index of the first needle in the haystack)."""
    lengths = list(lengths or default_lengths())
    depths = list(depths if depths is not None else default_depths())
    if min(lengths) <= BUFFER:
        raise ValueError(f"NIAH lengths must exceed the {BUFFER}-token buffer, got {min(lengths)}")
    hay = haystack_tokens(tokenizer, essay_dir, max(lengths))
    out = []
    for length in lengths:
        for depth in depths:
            ids, position = insert(tokenizer, hay[:length], needles, float(depth), length)
            context = tokenizer.decode(ids)
            user = question + QUESTION_SUFFIX
            if chat_template:
                prompt = tokenizer.apply_chat_template(
                    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": context},
                     {"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
            else:
                prompt = f"{SYSTEM}\n\n{context}\n\n{user}\n"
            out.append({"index": len(out), "input": prompt, "answer_prefix": answer_prefix,
                        "outputs": list(references), "length": count_tokens(tokenizer, prompt + answer_prefix),
                        "context_length": length, "depth": depth, "answer_position": position,
                        "max_new_tokens": TOKENS_TO_GENERATE})
    return out


def score(prediction: str, references: Sequence[str]) -> float:
    """Fraction of reference fragments found (case-insensitive), 0-100."""
    return 100.0 * sum(r.lower() in prediction.lower() for r in references) / len(references)


@dataclass(frozen=True)
class NiahOptions:
    depths: int = option(11, "NIAH depths per length (linspace 0-100)", ge=1)
    essay_dir: str | None = option(None, key="essay_dir", data=True, env="LONGRECIPE_ESSAYS_DIR")
    chat_template: bool = option(False, key="chat_template")

    def __post_init__(self) -> None:
        """`--essay-dir paul_graham_essays`: the cached essays (as RulerOptions reads it)."""
        object.__setattr__(self, "essay_dir", downloads.named(self.essay_dir, "paul_graham_essays"))


class Niah(TaskBase):
    """The original needle (San Francisco) at every (length, depth): one score row per depth."""

    name, version, Options = "niah", TASK_VERSION, NiahOptions
    view = View(columns=(), heatmap="Needle in a Haystack", gate="depth_means")

    def check(self, options: NiahOptions) -> None:
        if options.essay_dir is not None:  # the cached essays verified, or fetched when the name is not cached yet
            downloads.use("paul_graham_essays", options.essay_dir, required=True)

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: NiahOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        prefix = ("" if options.chat_template else " ") + "The best thing to do in San Francisco is"
        made = generate(tokenizer, [length], default_depths(0, 100, options.depths), options.essay_dir,
                        chat_template=options.chat_template, answer_prefix=prefix)
        return [Sample.from_dict(d, "needle", length) for d in made]

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        return [ScoreRow("niah", s.task, "substring", score(p, s.references), self.version, s.context_length,
                         float(s.depth), 1, int(not p.strip())) for p, s in zip(predictions, samples)]


TASK = Niah()
