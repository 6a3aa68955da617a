"""How hard a RULER multi-key sample is for a given tokenizer: pieces per key, other keys in the haystack, and how
often the asked key's last 1/2/3 pieces end another key (what a lookup on the last pieces would confuse).

    python benchmarks/ruler_distractors.py [--model tiny-v2] [--length 512] [--samples 50] [--predict]
        [--induction] [--binding]

Why: the tiny base v2 fails multikey_1/2 but not multikey_3 (RESULTS.md, sixth attempt); this separates "the
tokenizer splits keys into pieces many keys share" from "there are more keys to choose among". Tokenizer only,
unless --predict: then the model answers (greedy) and each first answer is sorted into the asked key's value,
another needle's value or neither, beside the share a pick among the keys at random would get right. --induction
also checks the model for induction heads, the circuit a lookup by key needs: 8 random token sequences written
twice; a model with them predicts the second copy (top-1 near 1), one without does not (near 0). --binding: the
share of answers the model gets exactly right (teacher-forced, every token) on 40 dense key-binding rows
(`DocSampler.binding_doc`, RULER's needle wording, several keys per row, each asked) of 224, 384 and 512 tokens.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def main() -> None:
    from transformers import AutoTokenizer

    from longrecipe.base import model_dirs
    from longrecipe.tasks import ruler
    from longrecipe.tasks.kv_format import RULER_NEEDLE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-v2")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--essay-dir", default=None, help="RULER's haystack (as benchmarks/tiny_base.py takes it)")
    ap.add_argument("--predict", action="store_true", help="also sort the model's answers (greedy, CPU)")
    ap.add_argument("--induction", action="store_true", help="also test the model for induction heads")
    ap.add_argument("--binding", action="store_true", help="also score answers on dense key-binding rows")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(model_dirs.resolve(args.model))
    if args.predict or args.induction or args.binding:
        from longrecipe.base.inference import load_model

        model, tok = load_model(model_dirs.resolve(args.model))
    if args.induction:
        print(induction(model, tok, args.seed))
    if args.binding:
        print(binding(model, tok, args.seed))
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


def induction(model, tok, seed: int) -> str:
    """Top-1 accuracy on the second copy of random token sequences (8 each of 20, 60 and 150 tokens)."""
    from longrecipe.recipes.tinybase.evals import induction_accuracy

    rng = np.random.default_rng(seed)
    out = [f"{n} tokens {induction_accuracy(model, tok, n, 8, rng):.2f}" for n in (20, 60, 150)]
    return "induction (top-1 on the second copy of a random sequence): " + ", ".join(out)


def binding(model, tok, seed: int) -> str:
    """Exactly right answers (every answer token the argmax, teacher-forced) on dense key-binding rows."""
    import torch

    from longrecipe.recipes.tinybase.config import TinyBaseConfig
    from longrecipe.recipes.tinybase.rows import DocSampler

    sampler, out = DocSampler(tok, TinyBaseConfig(), np.random.default_rng(seed)), []
    for length in (224, 384, 512):
        right = asked = 0
        for _ in range(40):
            ids, labels = sampler.binding_doc(length)
            with torch.no_grad():
                hit = (model(torch.tensor([ids])).logits[0, :-1].argmax(-1) == torch.tensor(ids[1:])).tolist()
            span: list[bool] = []
            for i, y in enumerate([*labels[1:], -100]):  # answers are the runs of supervised labels
                if y != -100 and ids[i + 1] != tok.eos_token_id:
                    span.append(hit[i])
                elif span:
                    right, asked, span = right + all(span), asked + 1, []
        out.append(f"{length} tokens {right}/{asked}")
    return "key binding (answers exactly right, teacher-forced): " + ", ".join(out)


def picks(model, tok, samples: list[dict]) -> str:
    """Which needle's value the model's answer starts with: the asked key's, another key's, or none."""
    from longrecipe.base.inference import greedy_generate
    from longrecipe.tasks.kv_format import RULER_NEEDLE

    preds = greedy_generate(model, tok, [s["input"] + s["answer_prefix"] for s in samples], 40)
    count = {"asked": 0, "another needle's": 0, "neither": 0}
    for s, pred in zip(samples, preds, strict=True):
        values = {v for _, _, v in RULER_NEEDLE.findall(s["input"])}
        first = min((pred.find(v), v) for v in values if v in pred)[1] if any(v in pred for v in values) else None
        count["neither" if first is None else "asked" if first in s["outputs"] else "another needle's"] += 1
    return ", ".join(f"{k} value {100 * v / len(samples):.0f}%" for k, v in count.items())


if __name__ == "__main__":
    main()
