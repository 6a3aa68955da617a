"""Acceptance of the embedded tiny base model: passkey retrieval at 1x and 4x its native length.

    python benchmarks/tiny_base.py [--model tiny] [--samples 100] [--rope ntk-at-target --target 2048]

Targets (README): passkey@1x >= 0.90 (it really retrieves inside its window) and passkey@4x <= 0.30 (it really
fails beyond it, with no extension). Last line: `passkey@1x=<acc> passkey@4x=<acc>`. With `--rope`, the same
weights under a RoPE rescaled for `--target` (as the trainer writes it before any training): what the RoPE change
alone does to retrieval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def main() -> None:
    import torch

    from longrecipe import models
    from longrecipe.evaluate.hf_backend import load_model
    from longrecipe.tinybase import passkey_accuracy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rope", default="none", help="rope.method applied before measuring (default: none)")
    ap.add_argument("--target", type=int, default=2048, help="target length of --rope")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = models.resolve(args.model)
    model, tok = load_model(path, device="cpu")
    native = int(model.config.max_position_embeddings)
    if args.rope != "none":
        from transformers import AutoConfig, AutoModelForCausalLM

        from longrecipe.train import rope

        conf = AutoConfig.from_pretrained(path)
        rope.apply(conf, args.rope, args.target, 1.0)
        model = AutoModelForCausalLM.from_pretrained(path, config=conf, dtype=torch.float32).eval()
        print(f"rope: {conf.rope_parameters}", flush=True)
    acc = {}
    for mult in (1, 2, 4):
        t0 = time.time()
        acc[mult] = passkey_accuracy(model, tok, mult * native, args.samples, seed=args.seed)
        print(f"length {mult * native} ({mult}x): passkey {acc[mult]:.2f} over {args.samples} samples "
              f"[{time.time() - t0:.1f}s]", flush=True)
    print(f"passkey@1x={acc[1]:.2f} passkey@4x={acc[4]:.2f}")


if __name__ == "__main__":
    main()
