"""Sample generation from 4k to 1M tokens: seconds per sample and peak memory against length, every generated task.

    python benchmarks/long_generation.py --essay-dir ../shared/data/paul_graham_essays \
        [--lengths 4096,16384,65536,262144,524288,1048576] [--tasks ruler/vt,babilong/qa3,...] [--json out.json]

Tokenizer: SmolLM2's (`longrecipe models pull smollm2-135m`). Tasks: RULER's 13, NIAH (one depth), passkey,
json_kv, HELMET Recall's three needle tasks, GraphWalks BFS and parents, BABILong qa1-qa5; one sample per
(task, length), built with the caches off. Each cell runs in a child forked from a parent that has loaded the
tokenizer and read the essays, so its time is the generation alone (haystack reading and fitting included) and its
peak is the child's own peak RSS (ru_maxrss: what it touched of the parent's pages and what it allocated) and
"growth" that peak minus the child's RSS when it started (the memory one sample costs). "exact": the sample's prompt
plus its generation budget fits the length, and "fill" is that sum over the length. "us/token": seconds per sample
over the length, which stays flat when time grows linearly. RULER's qa_1 / qa_2 read stand-in files in SQuAD v2 /
HotpotQA's format built from the essays (the real files cannot be downloaded here): the generator and the fitting
are the same; only the documents differ.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()
LENGTHS = (4096, 16384, 65536, 262144, 524288, 1048576)


def standin_qa(essay_dir: str | None, folder: Path) -> tuple[str, str]:
    """SQuAD v2 and HotpotQA files in the references' formats, their documents the essays' paragraphs."""
    from longrecipe.base.corpus import essay_text

    paras = [p.strip() for p in essay_text(essay_dir).split("\n\n") if len(p.split()) > 30][:1200]
    squad = {"version": "v2.0", "data": [
        {"title": f"t{a}", "paragraphs": [
            {"context": p, "qas": [{"id": f"{a}-{i}", "question": f"What is the first word of paragraph {i}?",
                                    "answers": [{"text": p.split()[0], "answer_start": 0}], "is_impossible": False}]}
            for i, p in enumerate(paras[a::40])]} for a in range(40)]}
    hotpot = [{"_id": str(i), "question": f"Which paragraph starts with {paras[i].split()[0]}?", "answer": f"p{i}",
               "context": [[f"p{j}", paras[j].split(". ")[:3]] for j in range(i, i + 10)]}
              for i in range(0, len(paras) - 10)]
    (folder / "squad.json").write_text(json.dumps(squad))
    (folder / "hotpot.json").write_text(json.dumps(hotpot))
    return str(folder / "squad.json"), str(folder / "hotpot.json")


def builders(tok: Any, essays: str | None, squad: str, hotpot: str) -> dict[str, Callable[[int], tuple[int, int]]]:
    """task -> (length -> (prompt tokens, generation budget)) for one sample, caches off."""
    from longrecipe.tasks import babilong, graphwalks, helmet, json_kv, niah, passkey, ruler
    from longrecipe.tasks.counting import count_tokens

    def ruler_task(name: str) -> Callable[[int], tuple[int, int]]:
        def build(n: int) -> tuple[int, int]:
            qa = {"qa_1": squad, "qa_2": hotpot}.get(name)
            (d,) = ruler.generate(name, tok, n, 1, 0, essays, qa)
            return d["prompt_tokens"], d["max_new_tokens"]
        return build

    def niah_one(n: int) -> tuple[int, int]:
        (d,) = niah.generate(tok, [n], [50], essays)
        return d["length"], d["max_new_tokens"]

    def passkey_one(n: int) -> tuple[int, int]:
        (d,) = passkey.generate(tok, n, 1)
        return count_tokens(tok, d["input"] + d.get("answer_prefix", "")), d["max_new_tokens"]

    def json_kv_one(n: int) -> tuple[int, int]:
        (d,) = json_kv.generate(tok, n, 1)
        return d["length"], d["max_new_tokens"]

    def helmet_task(name: str) -> Callable[[int], tuple[int, int]]:
        def build(n: int) -> tuple[int, int]:
            (s,) = helmet.needle_samples(name, tok, n, 1, 0, essays, False)
            return count_tokens(tok, s.prompt), s.max_new_tokens
        return build

    def graph_task(name: str) -> Callable[[int], tuple[int, int]]:
        def build(n: int) -> tuple[int, int]:
            (s,) = graphwalks.generate(tok, n, 1, name)
            return count_tokens(tok, s.prompt), s.max_new_tokens
        return build

    def babi_task(name: str) -> Callable[[int], tuple[int, int]]:
        def build(n: int) -> tuple[int, int]:
            (d,) = babilong.generate(name, tok, n, 1, 0, essays)
            return d["length"], d["max_new_tokens"]
        return build

    out: dict[str, Callable[[int], tuple[int, int]]] = {f"ruler/{t}": ruler_task(t) for t in ruler.TASKS}
    out |= {"niah/depth50": niah_one, "passkey": passkey_one, "json_kv": json_kv_one}
    out |= {f"helmet_recall/{t}": helmet_task(t) for t in helmet.NEEDLES}
    out |= {f"graphwalks/{t}": graph_task(t) for t in graphwalks.TASKS}
    out |= {f"babilong/{t}": babi_task(t) for t in babilong.TASKS}
    return out


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def cell(build: Callable[[int], tuple[int, int]], length: int, timeout: int) -> dict:
    """One sample in a forked child: its seconds, peak RSS and token counts (or its error)."""
    read, write = os.pipe()
    base = rss_mib()
    pid = os.fork()
    if pid == 0:  # the child: build, report, exit without the parent's clean-up
        os.close(read)
        try:
            start = rss_mib()
            t0 = time.perf_counter()
            prompt, new = build(length)
            row = {"seconds": time.perf_counter() - t0, "prompt": prompt, "new": new}
        except Exception as err:  # noqa: BLE001  (reported as the cell's result)
            row, start = {"error": f"{type(err).__name__}: {err}"[:200]}, 0.0
        row["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row["growth_mib"] = row["peak_mib"] - start
        os.write(write, json.dumps(row).encode())
        os._exit(0)
    os.close(write)
    t0 = time.time()
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.time() - t0 > timeout:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return {"error": f"timeout after {timeout} s", "base_mib": base}
        time.sleep(0.05)
    with os.fdopen(read) as f:
        text = f.read()
    return {**(json.loads(text) if text else {"error": "child died"}), "base_mib": base}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    p.add_argument("--tasks", default="", help="comma list of task labels (default: all)")
    p.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell before it is reported as a timeout")
    p.add_argument("--json", default="", help="also write the rows here")
    args = p.parse_args()
    from longrecipe.base import model_dirs
    from longrecipe.base.tokenization import load_tokenizer
    from longrecipe.tasks.ruler import common

    tok = load_tokenizer(model_dirs.resolve("smollm2-135m"))
    lengths = [int(x) for x in args.lengths.split(",")]
    common.essay_words(args.essay_dir)  # read once in the parent: every child shares it
    with tempfile.TemporaryDirectory() as tmp:
        squad, hotpot = standin_qa(args.essay_dir, Path(tmp))
        table = builders(tok, args.essay_dir, squad, hotpot)
        names = args.tasks.split(",") if args.tasks else list(table)
        rows = []
        print("| task | length | s/sample | us/token | peak MiB | growth MiB | prompt + gen | exact | fill |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            for n in lengths:
                r = {"task": name, "length": n, **cell(table[name], n, args.timeout)}
                rows.append(r)
                if "error" in r:
                    print(f"| {name} | {n:,} | {r['error']} | | | | | | |", flush=True)
                    continue
                total = r["prompt"] + r["new"]
                print(f"| {name} | {n:,} | {r['seconds']:.2f} | {1e6 * r['seconds'] / n:.2f} | "
                      f"{r['peak_mib']:.0f} | {r['growth_mib']:.0f} | {total:,} | {'yes' if total <= n else 'NO'} | "
                      f"{total / n:.4f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
