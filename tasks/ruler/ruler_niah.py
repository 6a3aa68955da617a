"""RULER needle-in-a-haystack (8 variants): key-value needles in noise, essay or needle haystacks."""

from __future__ import annotations

from typing import Any

import numpy as np

from longrecipe.tasks.ruler import common as C

TEMPLATE = (
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
    "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
)
ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
TOKENS_TO_GENERATE = 128


def singular(text: str) -> str:
    """RULER's rewrite when exactly one value is asked for (applied to the template, not the context)."""
    return text.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer")


def _essay_context(essay_dir: str | None, n: int, needles: list[str], depths: list[int]) -> str:
    sents = C.essay_sentences(essay_dir, n)
    cuts = [0] + sorted(int(len(sents) * (d / 100)) for d in depths) + [len(sents)]
    pieces = []
    for i in range(1, len(cuts)):
        pieces.append(" ".join(sents[cuts[i - 1] : cuts[i]]))
        if i - 1 < len(needles):
            pieces.append(needles[i - 1])
    return " ".join(pieces)


def _line_context(base: list[str], n: int, needles: list[str], rng: np.random.Generator) -> str:
    sentences = list(base[:n])
    indexes = sorted(rng.choice(n, size=len(needles), replace=False).tolist(), reverse=True) if n else [0] * len(
        needles)
    for index, needle in zip(indexes, needles):
        sentences.insert(index, needle)
    return "\n".join(sentences)


def generate(args: dict[str, Any], tokenizer: Any, length: int, num_samples: int, seed: int, task: str,
             essay_dir: str | None = None, wrap=lambda s: s, answer_prefix: str = ANSWER_PREFIX,
             tokens_to_generate: int = TOKENS_TO_GENERATE) -> list[dict]:
    """RULER's samples; `answer_prefix` and `tokens_to_generate` differ for HELMET's copies of these tasks
    (tasks/helmet.py: the prefix after a newline, 50 or 100 tokens)."""
    k = max(args["num_needle_k"], args["num_needle_q"])
    nv, nq, haystack = args["num_needle_v"], args["num_needle_q"], args["type_haystack"]
    if haystack == "essay":
        C.essay_words(essay_dir)  # a missing essay folder fails here, before any work
    template, prefix, type_v = TEMPLATE, answer_prefix, args["type_needle_v"]
    if nq * nv == 1:
        template, prefix, type_v = singular(template), singular(prefix), type_v[:-1]
    out, hint = [], None
    for index in range(num_samples):
        rng = C.sample_rng(seed, task, length, index)
        draw = C.Draw(rng)
        keys, values, needles = [], [], []
        for _ in range(k):
            keys.append(draw.value(args["type_needle_k"]))
            values.append([draw.value(args["type_needle_v"]) for _ in range(nv)])
            needles += [NEEDLE.format(type_needle_v=args["type_needle_v"], key=keys[-1], value=v) for v in values[-1]]
        rng.shuffle(needles)
        asked = rng.choice(k, size=nq, replace=False).tolist()
        queries = [keys[i] for i in asked]
        answers = [a for i in asked for a in values[i]]
        query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        depths = [int(d) for d in rng.choice(C.DEPTHS, size=len(needles), replace=False)]
        pool_rng = np.random.default_rng(rng.integers(2**63))
        place_seed = int(rng.integers(2**63))
        pool_draw = C.Draw(pool_rng)
        pool: list[str] = []  # distractor needles, drawn once in order so that size n reuses the first n

        def base(n: int) -> list[str]:
            if haystack == "noise":
                return [C.NOISE] * n
            while len(pool) < n:
                d = pool_draw
                pool.append(NEEDLE.format(type_needle_v=args["type_needle_v"], key=d.value(args["type_needle_k"]),
                                          value=d.value(args["type_needle_v"])))
            return pool[:n]

        def build(n: int) -> str:
            if haystack == "essay":
                context = _essay_context(essay_dir, n, needles, depths)
            else:
                context = _line_context(base(n), n, needles, np.random.default_rng([place_seed, n]))
            body = template.format(type_needle_v=type_v, context=context, query=query)
            return wrap(body) + prefix.format(type_needle_v=type_v, query=query)

        unit = 1.3 if haystack == "essay" else C.count_tokens(tokenizer, C.NOISE if haystack == "noise" else
                                                              needles[0])
        prompt, hint = C.fit(build, tokenizer, length - tokens_to_generate, unit, lo=1, hint=hint)
        out.append(C.record(tokenizer, prompt, prefix.format(type_needle_v=type_v, query=query), answers, index,
                            tokens_to_generate))
    return out
