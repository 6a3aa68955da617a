"""Sequence parallelism (train/ulysses.py) on 2 CPU processes with gloo: the same loss and gradients as one
process (within 1e-5 relative), through the Ulysses attention alone and through `longrecipe train`; bad layouts
refused in one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from test_train import CONFIG, SMALL, TORCHRUN_ENV, _torchrun, log, weights

from longrecipe.train.config import TrainConfig
from longrecipe.train.plan import SHAPES, sequence_problem

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def test_loss_and_gradients_match_one_process():
    # position gaps, ignored labels, packed documents, grouped-query attention (2 kv heads: one per process) and
    # activation checkpointing (the attention is recomputed in backward, with its exchanges)
    res = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(ROOT / "tests" / "sp_worker.py"),
                          "256"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(rows) == 4
    for row in rows:
        assert row["count_sp"] == row["count_one"], row
        assert abs(row["loss_sp"] - row["loss_one"]) <= 1e-5 * abs(row["loss_one"]), row
        assert row["grad_rel"] <= 1e-5, row


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_training_with_sequence_parallel_matches_one_process(tmp_path, mode):
    # longrecipe's position gaps span the 512-token target within 128-token rows, 64 tokens per process
    args = [*SMALL, "train.steps=3", "train.batch_size=2"]
    one = tmp_path / "one"
    assert run_cli("train", "--config", CONFIG, f"out={one}", *args).returncode == 0
    two = tmp_path / "two"
    res = subprocess.run(_torchrun(two, *args, "train.sequence_parallel=2", f"train.distributed={mode}"), cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    l1, l2 = log(one), log(two)
    assert [r["tokens"] for r in l2] == [r["tokens"] for r in l1]  # every token counted once over the group
    for a, b in zip(l1, l2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=2e-6)  # the log rounds to 6 decimals
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5, abs=2e-6)
    w1, w2 = weights(one), weights(two)
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4  # Adam on near-zero gradients, as DDP
    saved = json.loads((two / "model" / "config.json").read_text())
    assert "ulysses" not in json.dumps(saved)  # the saved model runs its usual attention


def test_layouts_that_cannot_split_are_named():
    shape = SHAPES["meta-llama-3-8b"]  # 32 heads, 8 key/value heads
    assert sequence_problem(shape, TrainConfig(sequence_parallel=8, train_length=4096), 8) is None
    assert "does not divide the model's 32 attention heads and 8 key/value heads" in sequence_problem(
        shape, TrainConfig(sequence_parallel=16, train_length=4096), 16)
    assert "does not divide the 6 process(es)" in sequence_problem(
        shape, TrainConfig(sequence_parallel=4, train_length=4096), 6)


@pytest.mark.parametrize(("override", "message"), [
    ("train.sequence_parallel=3", "train.sequence_parallel=3 does not divide train.train_length (128)"),
    ("train.sequence_parallel=2", "train.sequence_parallel=2 needs that many processes per group"),
])
def test_bad_sequence_parallel_is_one_line_exit_2(tmp_path, override, message):
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path / 'run'}", *SMALL, override)
    assert res.returncode == 2 and message in res.stderr, res.stderr[-1000:]
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written


def test_plan_with_sequence_parallel(tmp_path):
    cfg = ROOT / "train" / "configs" / "llama3_8b_80k_longrecipe.yaml"
    res = run_cli("train", "--plan", str(cfg), "train.sequence_parallel=8", "train.micro_batch_size=1",
                  "--gpus", "8", "--gpu-mem", "80GiB")
    assert "sequence parallel 8" in res.stdout, res.stdout + res.stderr
    res16 = run_cli("train", "--plan", str(cfg), "train.sequence_parallel=16", "--gpus", "16")
    assert res16.returncode == 2 and "32 attention heads and 8 key/value heads" in res16.stderr


def test_sequence_parallel_composes_with_fsdp2_data_parallel(tmp_path):
    # 4 processes: 2 data-parallel replicas x sequence parallel 2, parameters sharded over all 4 (FSDP2)
    args = [*SMALL, "train.steps=3", "train.batch_size=2"]
    one, four = tmp_path / "one", tmp_path / "four"
    assert run_cli("train", "--config", CONFIG, f"out={one}", *args).returncode == 0
    cmd = _torchrun(four, *args, "train.sequence_parallel=2", "train.distributed=fsdp2")
    cmd[cmd.index("--nproc_per_node") + 1] = "4"
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    for a, b in zip(log(one), log(four), strict=True):
        assert b["tokens"] == a["tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=2e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5, abs=2e-6)
