"""How hard a RULER multi-key sample is for a given tokenizer: pieces per key, other keys in the haystack, and how
often the asked key's last 1/2/3 pieces end another key (what a lookup on the last pieces would confuse).

    python benchmarks/ruler_distractors.py [--model docs/tiny-v2/model] [--length 512] [--samples 50] [--predict]

Why: the tiny base v2 fails multikey_1/2 but not multikey_3 (RESULTS.md, sixth attempt); this separates "the
tokenizer splits keys into pieces many keys share" from "there are more keys to choose among". Tokenizer only,
unless --predict: then the model answers (greedy) and each first answer is sorted into the asked key's value,
another needle's value or neither, beside the share a pick among the keys at random would get right.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def main() -> None:
    from transformers import AutoTokenizer

    from longrecipe.base import models
    from longrecipe.recipes.tinybase import RULER_NEEDLE
    from longrecipe.tasks import ruler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="docs/tiny-v2/model")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--essay-dir", default=None, help="RULER's haystack (as benchmarks/tiny_base.py takes it)")
    ap.add_argument("--predict", action="store_true", help="also sort the model's answers (greedy, CPU)")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(models.resolve(args.model))
    if args.predict:
        from longrecipe.base.modeling import load_model

        model, tok = load_model(models.resolve(args.model))
    for task in ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3"):
        samples = ruler.generate(task, tok, args.length, args.samples, seed=args.seed, essay_dir=args.essay_dir)
        pieces, others, shared = [], [], {1: 0, 2: 0, 3: 0}
        for s in samples:
            asked = re.search(r"for (.+?) mentioned", s["input"]).group(1)
            keys = [k for _, k, _ in RULER_NEEDLE.findall(s["input"]) if k != asked]
            mine = tok.tokenize(" " + asked)
            pieces.append(len(mine))
            others.append(len(keys))
            for n in shared:
                shared[n] += any(tok.tokenize(" " + k)[-n:] == mine[-n:] for k in keys)
        n = len(samples)
        print(f"{task}@{args.length}: {sum(pieces) / n:.1f} pieces per key, {sum(others) / n:.1f} other keys; "
              + ", ".join(f"last {k} piece(s) end another key in {100 * v / n:.0f}%" for k, v in shared.items()))
        if args.predict:
            chance = 100 * sum(1 / (k + 1) for k in others) / n
            print(f"  answers: {picks(model, tok, samples)}; a key picked at random: {chance:.0f}% right")


def picks(model, tok, samples: list[dict]) -> str:
    """Which needle's value the model's answer starts with: the asked key's, another key's, or none."""
    from longrecipe.base.modeling import greedy_generate
    from longrecipe.recipes.tinybase import RULER_NEEDLE

    preds = greedy_generate(model, tok, [s["input"] + s["answer_prefix"] for s in samples], 40)
    count = {"asked": 0, "another needle's": 0, "neither": 0}
    for s, pred in zip(samples, preds, strict=True):
        values = {v for _, _, v in RULER_NEEDLE.findall(s["input"])}
        first = min((pred.find(v), v) for v in values if v in pred)[1] if any(v in pred for v in values) else None
        count["neither" if first is None else "asked" if first in s["outputs"] else "another needle's"] += 1
    return ", ".join(f"{k} value {100 * v / len(samples):.0f}%" for k, v in count.items())


if __name__ == "__main__":
    main()
