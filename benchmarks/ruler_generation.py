"""RULER sample generation: ours against lm-eval 0.4.13's `ruler` generator, same essays, lengths and counts.

    python benchmarks/ruler_generation.py [--lengths 8192,16384] [--samples 25] [--essay-dir DIR]

Tasks compared: the 8 NIAH variants, vt, cwe and fwe (lm-eval's QA tasks download SQuAD/HotpotQA from the hub;
they are left out). Tokenizers: the embedded tiny one (2,048 tokens) and a 16,384-token BPE the script trains on
the same Python text. Each side runs in a fresh process and its time includes its module imports and set-up.
lm-eval's generator is pointed at the same essays (its haystack argument) and, since NLTK's punkt model cannot be
downloaded here, its sentence splitter is replaced by ours (which only makes it faster). "cached" is our second
run from the on-disk cache. Targets: >= 10x faster; cached re-run >= 100x. "set-up" is the part of each side's
time spent on imports, word lists, haystacks and (ours) certifying the tokenizer for additive counting;
"generation only" compares the times without it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()
NIAH = {  # task: (haystack, key type, value type, k, v, q)
    "niah_single_1": ("repeat", "words", "numbers", 1, 1, 1), "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1), "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1), "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 1, 1, 4),
}
TASKS = (*NIAH, "vt", "cwe", "fwe")


def tokenizer(kind: str, folder: Path):
    from transformers import AutoTokenizer

    from longrecipe.base import model_dirs

    if kind == "tiny":
        return AutoTokenizer.from_pretrained(model_dirs.resolve("tiny"))
    path = folder / "bpe16k"
    if not path.exists():
        from longrecipe.recipes.tinybase.tokenizer import train_tokenizer

        train_tokenizer(16384).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def run_lmeval(tok, lengths, samples, essay_dir) -> float:
    """Returns the set-up time (imports, word lists, haystacks); the caller times the whole."""
    t0 = time.time()
    import nltk

    nltk.download = lambda *a, **k: False  # offline: no download attempt at import
    from lm_eval.tasks.ruler import cwe_utils, fwe_utils, niah_utils, vt_utils
    from lm_eval.tasks.ruler import prepare_niah as pn

    from longrecipe.tasks.ruler import common

    pn.cached_sent_tokenize = common.split_sentences
    essay = list(common.essay_words(essay_dir))
    hay = {"essay": essay, "repeat": common.NOISE, "needle": pn.get_haystack("needle")}
    setup = time.time() - t0
    for length in lengths:
        for h, k, v, nk, nv, nq in NIAH.values():
            pn.generate_samples(hay[h], TOKENIZER=tok, max_seq_length=length, type_haystack=h, type_needle_k=k,
                                type_needle_v=v, template=niah_utils.TEMPLATE, num_samples=samples,
                                num_needle_k=nk, num_needle_v=nv, num_needle_q=nq)
        icl = vt_utils.sys_vartrack_w_noise_random(tokenizer=tok, num_samples=1, max_seq_length=500, incremental=5)[0]
        vt_utils.sys_vartrack_w_noise_random(tokenizer=tok, num_samples=samples, max_seq_length=length,
                                             icl_example=icl)
        cwe_utils.sys_word_pair_random(num_samples=samples, max_seq_length=length, tokenizer=tok)
        fwe_utils.sys_kwext(tok, length, num_samples=samples)
    return setup


def run_ours(tok, lengths, samples, essay_dir, cache_dir) -> float:
    t0 = time.time()
    from longrecipe.tasks import counting, ruler
    from longrecipe.tasks.ruler import common

    common.essay_words(essay_dir), common.wonderwords_lists(), counting.counter(tok)
    setup = time.time() - t0
    for length in lengths:
        for task in TASKS:
            ruler.generate(task, tok, length, samples, seed=42, essay_dir=essay_dir, cache_dir=cache_dir)
    return setup


def child(args) -> None:
    import logging

    logging.disable(logging.WARNING)
    os.environ["TQDM_DISABLE"] = "1"
    t0 = time.time()
    tok = tokenizer(args.tokenizer, Path(args.work))
    t_tok = time.time() - t0
    lengths = [int(x) for x in args.lengths.split(",")]
    t0 = time.time()
    if args.child == "lmeval":
        setup = run_lmeval(tok, lengths, args.samples, args.essay_dir)
    else:
        setup = run_ours(tok, lengths, args.samples, args.essay_dir, args.cache)
    print(json.dumps({"side": args.child, "tokenizer": args.tokenizer, "seconds": time.time() - t0,
                      "setup_s": setup, "tokenizer_load_s": t_tok}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="8192,16384")  # cwe needs > 4096 with the tiny tokenizer
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    ap.add_argument("--child", default=None)
    ap.add_argument("--tokenizer", default="tiny")
    ap.add_argument("--work", default=None)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="ruler-bench-"))
    rows = {}
    for tok in ("tiny", "bpe16k"):
        cache = work / f"cache-{tok}"
        for side in ("lmeval", "ours", "ours-cached"):
            cmd = [sys.executable, __file__, "--lengths", args.lengths, "--samples", str(args.samples), "--child",
                   side.replace("-cached", ""), "--tokenizer", tok, "--work", str(work), "--cache", str(cache)]
            if args.essay_dir:
                cmd += ["--essay-dir", args.essay_dir]
            t0 = time.time()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{side} failed: {out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["wall_s"] = time.time() - t0
            rows[tok, side] = row
            print(json.dumps({**row, "side": side}), flush=True)
    print(f"| tokenizer | lm-eval s (set-up) | ours s (set-up) | ours cached s | speed-up | generation only "
          f"| cached speed-up |  ({args.samples} samples x {len(TASKS)} tasks x lengths {args.lengths})")
    print("|---|---|---|---|---|---|---|")
    for tok in ("tiny", "bpe16k"):
        a, b, c = (rows[tok, s] for s in ("lmeval", "ours", "ours-cached"))
        ga, gb = a["seconds"] - a["setup_s"], b["seconds"] - b["setup_s"]
        print(f"| {tok} | {a['seconds']:.1f} ({a['setup_s']:.1f}) | {b['seconds']:.2f} ({b['setup_s']:.2f}) | "
              f"{c['seconds']:.2f} | {a['seconds'] / b['seconds']:.2f}x | {ga / gb:.2f}x | "
              f"{a['seconds'] / c['seconds']:.0f}x |")

if __name__ == "__main__":
    main()
