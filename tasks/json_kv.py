"""HELMET's JSON KV (princeton-nlp/HELMET, the "Recall" category; after Liu et al.'s lost-in-the-middle KV task):
a JSON object of random UUID keys and values fills the context; the model is asked for one key's value.

Reproduced from HELMET's definition (docs/notes/helmet_spec.md, section 1): the context is `JSON data:` and the
object as `json.dumps(obj, indent=4)`; the prompt is HELMET's user template, two demonstrations taken from the same
object, `Key: <key>` and the answer prefix `Corresponding value:`; greedy, 100 new tokens; scored by
substring exact match after SQuAD normalisation (lower case, punctuation and articles removed, single spaces), the
mean x 100. Deliberate deviations, documented: HELMET ships pre-built files sized for the Llama-2 tokenizer (K = 50,
105, 220, 440, 900, 1800 pairs at 4k ... 128k) and cuts the JSON's tail when another tokenizer needs more tokens; here
K is fitted to the evaluated tokenizer (the most pairs whose prompt and 100 answer tokens fit the length), so no
gold pair is ever cut away; the gold pair sits at depth 0, 0.2, ..., 1.0 of the object in turn (HELMET's files hold
6 depths; its exact positions are not published).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longrecipe.base.schema import ScoreRow
from longrecipe.tasks import cache, chat
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.longbench import normalize_answer
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1
HEADER = "JSON data:\n"
USER_TEMPLATE = ("{context}\n\nExtract the value corresponding to the specified key in the JSON object below."
                 "\n\n{demos}Key: {question}")
ANSWER_PREFIX = "Corresponding value:"
DEMO_TEMPLATE = "Key: {key}\nCorresponding value:{value}"
MAX_NEW_TOKENS = 100
DEPTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def uuid4(rng: random.Random) -> str:
    """A random UUID (version 4, RFC 4122 variant) from `rng`: reproducible from the seed, unlike uuid.uuid4()."""
    n = rng.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (4 << 76)  # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # variant 10xx
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def render(pairs: list[tuple[str, str]], gold: int, demos: list[int],
           wrap: Callable[[str], str] | None = None) -> str:
    """HELMET's prompt for the object `pairs`, asking for pair `gold`, with pairs `demos` as demonstrations; with
    `wrap` (a chat template) the user template is the user turn and no answer prefix follows (as HELMET's chat path)."""
    context = HEADER + json.dumps(dict(pairs), indent=4)
    shown = "\n\n".join(DEMO_TEMPLATE.format(key=pairs[d][0], value=" " + pairs[d][1]) for d in demos)
    user = USER_TEMPLATE.format(context=context, demos=shown + "\n\n" if demos else "", question=pairs[gold][0])
    return wrap(user) if wrap is not None else user + "\n" + ANSWER_PREFIX


def _layout(k: int, depth: float, rng_seed: int, shots: int) -> tuple[int, list[int]]:
    """Where the gold pair sits among `k` pairs, and which other pairs are the demonstrations."""
    gold = round(depth * (k - 1))
    others = [i for i in range(k) if i != gold]
    return gold, random.Random(rng_seed).sample(others, min(shots, len(others)))


def fit(tokenizer: Any, pool: list[tuple[str, str]], budget: int, depth: float, seed: int, shots: int,
        wrap=None) -> tuple[str, int, int]:
    """(prompt, pairs, gold index) with the most pairs of `pool` whose prompt fits `budget` tokens (binary search:
    the token count grows with the pairs)."""
    def build(k: int) -> tuple[str, int]:
        gold, demos = _layout(k, depth, seed, shots)
        return render(pool[:k], gold, demos, wrap), gold

    lo, hi = 1, len(pool)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(tokenizer, build(mid)[0]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    prompt, gold = build(lo)
    return prompt, lo, gold


def generate(tokenizer: Any, length: int, num_samples: int, seed: int = 0, shots: int = 2,
             chat_template: bool = False) -> list[dict]:
    """Samples whose prompt plus MAX_NEW_TOKENS fits `length` tokens of `tokenizer`; sample i puts its gold pair at
    depth DEPTHS[i % 6]."""
    budget = length - MAX_NEW_TOKENS
    wrap = chat.wrapper(tokenizer) if chat_template else None
    per_pair = max(1, count_tokens(tokenizer, f'    "{uuid4(random.Random(0))}": "{uuid4(random.Random(1))}",\n'))
    out = []
    for i in range(num_samples):
        rng = random.Random(f"json_kv/{seed}/{length}/{i}")
        pool = [(uuid4(rng), uuid4(rng)) for _ in range(max(shots + 2, 2 * budget // per_pair + 2))]  # ample
        depth = DEPTHS[i % len(DEPTHS)]
        prompt, k, gold = fit(tokenizer, pool, budget, depth, rng.getrandbits(32), shots, wrap)
        used = count_tokens(tokenizer, prompt)
        if used > budget or k < shots + 1:
            raise ValueError(f"json_kv: length {length} cannot hold the prompt with {shots + 1} pairs (it needs "
                             f"more than {length} tokens with this tokenizer, {MAX_NEW_TOKENS} of them for the answer)")
        head = prompt.split(f'"{pool[gold][0]}"')[0]
        out.append({"index": i, "input": prompt, "answer_prefix": "", "outputs": [pool[gold][1]], "length": used,
                    "depth": depth, "answer_position": count_tokens(tokenizer, head), "max_new_tokens": MAX_NEW_TOKENS,
                    "pairs": k})
    return out


def substring_exact_match(prediction: str, gold: str) -> float:
    """HELMET's metric: the normalised gold value inside the normalised answer."""
    return float(normalize_answer(gold) in normalize_answer(prediction))


@dataclass(frozen=True)
class JsonKvOptions:
    shots: int = option(2, "demonstrations (key-value pairs of the same object) before the question", ge=0)
    chat_template: bool = option(False, key="chat_template")


class JsonKv(TaskBase):
    """JSON KV at each length: one substring-exact-match row per length."""

    name, version, Options = "json_kv", TASK_VERSION, JsonKvOptions
    view = View(columns=(Column("json_kv"),),
                tables=(Table("json_kv_by_length", "HELMET JSON KV (substring exact match) by context length"),),
                plots=(Plot("json_kv_vs_length", "JSON KV substring exact match"),))

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: JsonKvOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        def build() -> list[Sample]:
            made = generate(tokenizer, length, n, seed, options.shots, options.chat_template)
            return [Sample.from_dict(d, "json_kv", length) for d in made]

        return cache.samples(cache.path(self.name, self.version, tokenizer, length, n, seed, options), build)

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        values = [100 * substring_exact_match(p, s.references[0]) for p, s in zip(predictions, samples)]
        nulls = sum(not p.strip() for p in predictions)
        return [ScoreRow("json_kv", "json_kv", "substring_exact_match", sum(values) / len(values), self.version,
                         samples[0].context_length, None, len(values), nulls)]


TASK = JsonKv()
