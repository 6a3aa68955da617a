"""Acceptance of the embedded tiny base model: passkey retrieval at 1x and 4x its native length.

    python benchmarks/tiny_base.py [--model tiny] [--samples 100] [--rope ntk-at-target --target 2048]
    python benchmarks/tiny_base.py --model DIR --ruler --samples 50 --essay-dir ESSAYS     # v2 acceptance

Targets (README): passkey@1x >= 0.90 (it really retrieves inside its window) and passkey@4x <= 0.30 (it really
fails beyond it, with no extension). Last line: `passkey@1x=<acc> passkey@4x=<acc>`. With `--rope`, the same
weights under a RoPE rescaled for `--target` (as the trainer writes it before any training): what the RoPE change
alone does to retrieval. With `--ruler`, RULER's NIAH variants and fwe at 1x and 4x too (the v2 targets: every
niah_* >= 80 and their mean >= 90 at 1x, passkey >= 95; niah mean and passkey <= 30 at 4x); last line
`niah@1x=<mean> passkey@1x=<acc> niah@4x=<mean> passkey@4x=<acc>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def main() -> None:
    import torch

    from longrecipe.base import model_dirs
    from longrecipe.base.inference import load_model
    from longrecipe.recipes.tinybase.config import RULER_MIX
    from longrecipe.recipes.tinybase.evals import passkey_accuracy, ruler_accuracy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rope", default="none", help="rope.method applied before measuring (default: none)")
    ap.add_argument("--target", type=int, default=2048, help="target length of --rope")
    ap.add_argument("--ruler", action="store_true", help="also RULER's niah_* and fwe at 1x and 4x")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"),
                    help="essays for RULER's essay haystacks (default: $LONGRECIPE_ESSAYS_DIR, else built-in text)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = model_dirs.resolve(args.model)
    model, tok = load_model(path, device=args.device, dtype=torch.float32)  # fp32 on a GPU too: as measured here
    native = int(model.config.max_position_embeddings)
    if args.rope != "none":
        from transformers import AutoConfig, AutoModelForCausalLM

        from longrecipe.train import rope

        conf = AutoConfig.from_pretrained(path)
        rope.apply(conf, args.rope, args.target, 1.0)
        model = AutoModelForCausalLM.from_pretrained(path, config=conf, dtype=torch.float32).to(args.device).eval()
        print(f"rope: {conf.rope_parameters}", flush=True)
    acc = {}
    for mult in (1, 2, 4):
        t0 = time.time()
        acc[mult] = passkey_accuracy(model, tok, mult * native, args.samples, seed=args.seed)
        print(f"length {mult * native} ({mult}x): passkey {acc[mult]:.2f} over {args.samples} samples "
              f"[{time.time() - t0:.1f}s]", flush=True)
    if not args.ruler:
        print(f"passkey@1x={acc[1]:.2f} passkey@4x={acc[4]:.2f}")
        return
    niah = {}
    for mult in (1, 4):
        t0 = time.time()
        scores = ruler_accuracy(model, tok, mult * native, args.samples, args.essay_dir, seed=args.seed,
                                tasks=tuple(RULER_MIX))
        niah[mult] = [v for t, v in scores.items() if t.startswith("niah_")]
        print(f"length {mult * native} ({mult}x), {args.samples} samples per task [{time.time() - t0:.0f}s]: "
              + ", ".join(f"{t} {v:.0f}" for t, v in scores.items()), flush=True)
    mean = {m: sum(v) / len(v) if v else float("nan") for m, v in niah.items()}
    print(f"niah@1x={mean[1]:.1f} passkey@1x={100 * acc[1]:.0f} niah@4x={mean[4]:.1f} passkey@4x={100 * acc[4]:.0f}")


if __name__ == "__main__":
    main()
