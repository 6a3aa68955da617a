"""Host memory of training data: in-memory tokenization (every document's arrays in the process) against the
token store (one streaming build, then memory maps), on corpora 1x and 10x (or more) the built-in text.

    python benchmarks/token_store.py [--mults 1,10] [--rows 64]

Each measurement is its own process: peak resident set above the resident set after imports and the tokenizer,
for (memory) `data.build` from the JSONL, (store build) `longrecipe tokenize`'s build, (store read) opening the
store and drawing `--rows` training rows. Last line: `10x/1x peak: memory <a>, store build <b>, store read <c>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()

CHILD = r"""
import json, resource, sys
from pathlib import Path
def rss(): return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20
from longrecipe.base.tokenization import load_tokenizer
from longrecipe.base.model_dirs import resolve
from longrecipe.train import data as D, store as S
from longrecipe.train.recipe import load_config
mode, src, store = sys.argv[1:4]
tok = load_tokenizer(str(resolve("tiny")))
tok("warm up the tokenizer", return_offsets_mapping=True)
base = rss()
cfg = load_config("train/configs/tiny_longrecipe.yaml", [f"data.source={src}"])
if mode == "memory":
    b = D.build(tok, cfg.data, cfg.train)
    [b.batch(0, s, 0, 0, 1) for s in range(int(sys.argv[4]))]
elif mode == "build":
    S.build(src, tok, store, progress=False)
else:
    b = D.build(tok, cfg.data, cfg.train, store)
    [b.batch(0, s, 0, 0, 1) for s in range(int(sys.argv[4]))]
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base}))
"""


def corpus_file(path: Path, mult: float) -> int:
    """A JSONL corpus of shuffled built-in paragraphs, `mult` times the built-in text's size; returns its tokens
    (counted after the store build)."""
    import numpy as np

    from longrecipe.base import corpus

    paras, size = list(corpus.paragraphs()), len(corpus.text())
    rng, n = np.random.default_rng(0), 0
    with open(path, "w") as f:
        while n < size * mult:
            doc = "\n\n".join(paras[i] for i in rng.integers(0, len(paras), int(rng.integers(40, 100))))
            f.write(json.dumps({"text": doc}) + "\n")
            n += len(doc)
    return path.stat().st_size


def run(mode: str, src: Path, store: Path, rows: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(store), str(rows)], check=True,
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mults", default="1,10")
    ap.add_argument("--rows", type=int, default=64)
    args = ap.parse_args()
    mults = [float(m) for m in args.mults.split(",")]
    res = {}
    print(f"{'corpus':>8} {'MB':>7} {'tokens':>10} {'memory MB':>10} {'store build MB':>15} {'store read MB':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in mults:
            src, store = Path(tmp) / f"c{m}.jsonl", Path(tmp) / f"s{m}"
            size = corpus_file(src, m)
            mem = run("memory", src, store, args.rows)
            build = run("build", src, store, args.rows)
            read = run("read", src, store, args.rows)
            tokens = json.loads((store / "meta.json").read_text())["tokens"]
            res[m] = (mem, build, read)
            print(f"{m:>7g}x {size / 1e6:7.1f} {tokens:>10,} {mem:10.1f} {build:15.1f} {read:14.1f}", flush=True)
    lo, hi = res[mults[0]], res[mults[-1]]
    print(f"{mults[-1]:g}x/{mults[0]:g}x peak: memory {hi[0] / lo[0]:.2f}, store build {hi[1] / lo[1]:.2f}, "
          f"store read {hi[2] / lo[2]:.2f}")


if __name__ == "__main__":
    main()
