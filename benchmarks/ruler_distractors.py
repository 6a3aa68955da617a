"""How hard a RULER multi-key sample is for a given tokenizer: pieces per key, other keys in the haystack, and how
often the asked key's last 1/2/3 pieces end another key (what a lookup on the last pieces would confuse).

    python benchmarks/ruler_distractors.py [--model docs/tiny-v2/model] [--length 512] [--samples 50]

Why: the tiny base v2 fails multikey_1/2 but not multikey_3 (RESULTS.md, sixth attempt); this separates "the
tokenizer splits keys into pieces many keys share" from "there are more keys to choose among". Tokenizer only.
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
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(models.resolve(args.model))
    for task in ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3"):
        samples = ruler.generate(task, tok, args.length, args.samples, seed=args.seed)
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


if __name__ == "__main__":
    main()
