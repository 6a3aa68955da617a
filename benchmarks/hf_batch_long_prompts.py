"""hf backend on CPU: one long prompt per generate call against batches of 8, same prompts, same process.

    python benchmarks/hf_batch_long_prompts.py [--model smollm2-135m] [--length 4096] [--prompts 8] [--sdpa-only]

Why (and why `greedy_generate` now runs prompts of >= 2048 tokens one per call on CPU): the SmolLM2 report's 8k
cells took ~57 s per sample in batches of 8 and ~30 s one at a time (two runs on two days), and lm-eval's hf model
57 vs 13 s per sample at 4k; this measures the two in one go on the same RULER prompts (niah_single_1 and
niah_multikey_1, chat template on, 128 new tokens at most), splits each side's time into prefill (a forward over
the prompts) and the rest (decoding), and counts the tokens each row generates until its end of turn. Greedy
answers of the two sides are compared too (padding must not change them). The batch-8 side runs the padded
batches themselves (`CPU_ALONE_FROM` raised for it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def sdpa_alone(length: int, heads: int = 9, head_dim: int = 64) -> None:
    """One layer's SDPA on CPU (SmolLM2's 9 heads x 64) at `length`: causal flag vs the same causal pattern as a
    boolean and a float mask (what a padded batch passes), and the math kernel; mean of 3 after a warm-up."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, length, head_dim) for _ in range(3))
    causal = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    additive = torch.zeros(length, length).masked_fill(~causal[0, 0], float("-inf"))[None, None]

    def mean_s(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        return (time.perf_counter() - t0) / 3

    runs = {"is_causal=True": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            "boolean mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=causal),
            "float mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=additive)}
    for name, fn in runs.items():
        print(f"sdpa {length} tokens, {name}: {mean_s(fn):.3f} s", flush=True)
    with sdpa_kernel(SDPBackend.MATH):
        print(f"sdpa {length} tokens, math kernel, is_causal=True: {mean_s(runs['is_causal=True']):.3f} s")


def main() -> None:
    import torch

    from longrecipe.base import inference, model_dirs
    from longrecipe.base.inference import greedy_generate, load_model
    from longrecipe.tasks import ruler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--essay-dir", default=None)
    ap.add_argument("--sdpa-only", action="store_true", help="only one layer's SDPA, causal flag vs masks")
    args = ap.parse_args()
    sdpa_alone(args.length)
    if args.sdpa_only:
        return
    path = model_dirs.resolve(args.model)
    model, tok = load_model(path, device="cpu", dtype=torch.float32)
    half = args.prompts // 2
    samples = [s for task, n in (("niah_single_1", half), ("niah_multikey_1", args.prompts - half))
               for s in ruler.generate(task, path, args.length, n, seed=7, essay_dir=args.essay_dir,
                                       chat_template=True)]
    prompts = [s["input"] + s["answer_prefix"] for s in samples]
    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    rows = {}
    inference.CPU_ALONE_FROM = 10**9  # the padded batches themselves (greedy_generate avoids them on CPU)
    for batch in (8, 1):
        with torch.inference_mode():
            t0 = time.perf_counter()
            for i in range(0, len(prompts), batch):  # prefill alone: one forward over the same batches
                enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, padding_side="left")
                model(**enc, use_cache=False, logits_to_keep=1)
            prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        preds = greedy_generate(model, tok, prompts, 128, batch, eos_token_id=eos)
        total = time.perf_counter() - t0
        new = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in preds]
        rows[batch] = {"batch": batch, "s_per_prompt": total / len(prompts), "prefill_s_per_prompt":
                       prefill / len(prompts), "new_tokens": new, "preds": preds}
        print(json.dumps({k: v for k, v in rows[batch].items() if k != "preds"}), flush=True)
    same = sum(a.strip() == b.strip() for a, b in zip(rows[8]["preds"], rows[1]["preds"]))
    print("| batch | s per prompt | prefill s per prompt | decode s per prompt | new tokens per row |")
    print("|---|---|---|---|---|")
    for b, r in rows.items():
        print(f"| {b} | {r['s_per_prompt']:.1f} | {r['prefill_s_per_prompt']:.1f} | "
              f"{r['s_per_prompt'] - r['prefill_s_per_prompt']:.1f} | {r['new_tokens']} |")
    print(f"batch 8 / batch 1 time per prompt: {rows[8]['s_per_prompt'] / rows[1]['s_per_prompt']:.2f}x; "
          f"identical greedy answers: {same} of {len(prompts)} ({len(prompts)} prompts of <= {args.length} tokens)")


if __name__ == "__main__":
    main()
