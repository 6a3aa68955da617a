"""`longrecipe eval --data-parallel-size N`: N engines on disjoint shards of every job, merged into one
predictions tree that equals one engine's; a kill -9 mid-run loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, cli

from longrecipe.evaluate.runner import cpu_share

ARGS = ["--model", "tiny", "--suite", "ruler,passkey", "--ruler-tasks", "niah_single_1,vt", "--lengths", "256,512",
        "--allow-extrapolation"]

def tree(out: Path) -> dict[str, str]:
    return {str(f.relative_to(out)): f.read_text() for f in sorted((out / "predictions").rglob("*.jsonl"))}

def scores(out: Path) -> list[tuple]:
    rows = json.loads((out / "results.json").read_text())["scores"]
    return sorted((r["suite"], r["task"], r["context_length"], r["metric"], r["value"]) for r in rows)


@pytest.mark.integration
def test_two_workers_give_one_workers_predictions(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("eval", *ARGS, "--samples", "6", "--out", str(one)).returncode == 0
    res = cli("eval", *ARGS, "--samples", "6", "--out", str(two), "--data-parallel-size", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert tree(two) == tree(one)  # merged in sample order: byte-identical files, no shard file left
    assert not list((two / "predictions").rglob("*shard*"))
    assert scores(two) == scores(one)
    assert json.loads((two / "eval_config.json").read_text())["data_parallel_size"] == 2


@pytest.mark.integration
def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    args = [*ARGS, "--samples", "30", "--batch-size", "1"]
    assert cli("eval", *args, "--out", str(ref)).returncode == 0
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "eval", *args, "--out", str(out), "--data-parallel-size",
           "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 900
    shard_rows = 0
    while time.monotonic() < deadline and shard_rows < 10:
        shard_rows = sum(len(f.read_text().splitlines()) for f in (out / "predictions").rglob("*shard*")) \
            if (out / "predictions").exists() else 0
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and both workers
    proc.wait()
    assert shard_rows >= 10 and not (out / "results.json").exists(), "the run finished before it could be killed"
    kept = {(f.name, line) for f in (out / "predictions").rglob("*.jsonl") for line in f.read_text().splitlines()
            if line.endswith("}")}
    res = cli("eval", *args, "--out", str(out), "--data-parallel-size", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert tree(out) == tree(ref)  # every sample once, in order, with the one-process answer
    merged = {line for text in tree(out).values() for line in text.splitlines()}
    assert {line for _, line in kept} <= merged  # finished samples kept verbatim, not recomputed


def test_each_worker_gets_its_own_cores():
    cpus = sorted(os.sched_getaffinity(0))
    shares = [cpu_share(i, 2) for i in range(2)]
    assert all(shares) and all(c in cpus for s in shares for c in s)
    if len(cpus) >= 2:
        assert not set(shares[0]) & set(shares[1])  # disjoint: the engines do not spin on the same cores
