"""RULER common words extraction: a numbered word list in which 10 words repeat more often; one-shot example.

Two of RULER's ways out, reproduced: a list longer than the wonderwords vocabulary (8,166 words; 128k prompts
need more) draws its words from a larger English word list instead, and when even the smallest list does not fit
the length, RULER keeps 10 words (all of them common) and redraws until a draw of short enough words fits.
Deviation: RULER's larger list (`json/english_words.json`) is stored in Git LFS and cannot be had offline; ours is
Webster's Second International (`english-words` package, `web2`, lower-case alphabetic: 234,450 words)."""

from __future__ import annotations

from typing import Any

import numpy as np

from longrecipe.tasks.ruler import common as C

TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
            "ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?")
ANSWER_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
TOKENS_TO_GENERATE = 120
MAX_REDRAWS = 2000  # RULER redraws without bound; past this many draws the length is reported as too short


def vocabulary(seed: int) -> list[str]:
    """sorted(set(nouns + adjectives + verbs)), shuffled once by the task seed (as RULER does)."""
    lists = C.wonderwords_lists()
    words = sorted(set(lists["nouns"] + lists["adjs"] + lists["verbs"]))
    np.random.default_rng(seed).shuffle(words)
    return words


_LARGE: list[str] = []


def large_vocabulary() -> list[str]:
    """The larger list RULER falls back to for long word lists (ours: web2, sorted; loaded once)."""
    if not _LARGE:
        try:
            from english_words import get_english_words_set
        except ImportError:
            raise C.SourceError("cwe at this length needs more words than wonderwords has: pip install "
                                "english-words (in longrecipe[eval])") from None
        _LARGE.extend(sorted(get_english_words_set(["web2"], lower=True, alpha=True)))
    return _LARGE


def _example(words: list[str], rng: np.random.Generator, n: int, common_rep: int, rare_rep: int, num_cw: int):
    if n > len(words):
        words = large_vocabulary()
    chosen = [words[i] for i in rng.choice(len(words), size=n, replace=False)]
    common, rare = chosen[:num_cw], chosen[num_cw:]
    listing = common * common_rep + rare * rare_rep
    np.random.default_rng(len(listing)).shuffle(listing)  # RULER shuffles with a fixed seed
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(listing)), common


def generate(args: dict[str, Any], tokenizer: Any, length: int, num_samples: int, seed: int, task: str,
             essay_dir: str | None = None, wrap=lambda s: s) -> list[dict]:
    words, num_cw = vocabulary(seed), args["num_cw"]
    short = length < 4096  # RULER's settings below 4k tokens
    shot_args = (20, 3, 1) if short else (40, 10, 3)
    main_rep = (6, 1) if short else (args["freq_cw"], args["freq_ucw"])
    out, hint = [], None
    for index in range(num_samples):
        rng = C.sample_rng(seed, task, length, index)
        shot_ctx, shot_ans = _example(words, rng, shot_args[0], shot_args[1], shot_args[2], num_cw)
        shot = (TEMPLATE + ANSWER_PREFIX).format(context=shot_ctx) + " " + " ".join(
            f"{i + 1}. {w}" for i, w in enumerate(shot_ans))
        draw_seed = int(rng.integers(2**63))
        answers: dict[int, list[str]] = {}

        def build(n: int) -> str:
            ctx, answers[n] = _example(words, np.random.default_rng([draw_seed, n]), n, *main_rep, num_cw)
            return wrap(shot + "\n" + TEMPLATE.format(context=ctx)) + ANSWER_PREFIX

        budget = length - TOKENS_TO_GENERATE
        unit = C.count_tokens(tokenizer, " 1. word") * main_rep[1]
        try:
            prompt, n = C.fit(build, tokenizer, budget, unit, lo=num_cw + 1, hint=hint, secant=False)
            hint = n
        except ValueError as err:
            if "cannot hold" not in str(err):
                raise
            prompt, answers[num_cw] = _redraw_smallest(words, rng, tokenizer, budget, shot_args, main_rep, num_cw,
                                                       wrap, err)
            n = num_cw
        rec = C.record(tokenizer, prompt, ANSWER_PREFIX, answers[n], index, TOKENS_TO_GENERATE)
        rec["answer_position"], rec["depth"] = None, None  # the answers are spread over the whole list
        out.append(rec)
    return out


def _redraw_smallest(words: list[str], rng: np.random.Generator, tokenizer: Any, budget: int, shot_args: tuple,
                     main_rep: tuple, num_cw: int, wrap, err: Exception) -> tuple[str, list[str]]:
    """RULER's last resort: `num_cw` words (all common), the one-shot example and the list redrawn until it fits."""
    for _ in range(MAX_REDRAWS):
        shot_ctx, shot_ans = _example(words, rng, *shot_args, num_cw)
        shot = (TEMPLATE + ANSWER_PREFIX).format(context=shot_ctx) + " " + " ".join(
            f"{i + 1}. {w}" for i, w in enumerate(shot_ans))
        ctx, common = _example(words, rng, num_cw, *main_rep, num_cw)
        prompt = wrap(shot + "\n" + TEMPLATE.format(context=ctx)) + ANSWER_PREFIX
        if C.count_tokens(tokenizer, prompt) <= budget:
            return prompt, common
    raise ValueError(f"{err}; {MAX_REDRAWS} redraws of {num_cw} words did not fit either") from None
