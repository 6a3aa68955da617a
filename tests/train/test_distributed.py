"""Training on several CPU processes (gloo, torchrun): DDP and FSDP2 match one process, FSDP2 killed and resumed,
background saves hold their step, and sequence parallelism (train/ulysses.py) gives one process's loss and
gradients (within 1e-5 relative) alone, through `longrecipe train`, and composed with FSDP2 data parallelism."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, SMALL, TORCHRUN, TORCHRUN_ENV, TRAIN_CONFIG, cli, torchrun, train_log, weights
from safetensors.torch import load_file

from longrecipe.train.config import TrainConfig
from longrecipe.train.plan import SHAPES, sequence_problem


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out

def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.integration
def test_loss_and_gradients_match_one_process():
    # position gaps, ignored labels, packed documents, grouped-query attention (2 kv heads: one per process) and
    # activation checkpointing (the attention is recomputed in backward, with its exchanges)
    worker = str(ROOT / "tests" / "train" / "sp_worker.py")
    res = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", worker,
                          "256"], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(rows) == 4
    for row in rows:
        assert row["count_sp"] == row["count_one"], row
        assert abs(row["loss_sp"] - row["loss_one"]) <= 1e-5 * abs(row["loss_one"]), row
        assert row["grad_rel"] <= 1e-5, row


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_training_with_sequence_parallel_matches_one_process(tmp_path, mode, trained):
    # longrecipe's position gaps span the 512-token target within 128-token rows, 64 tokens per process
    args = [*SMALL, "train.steps=3", "train.method=longrecipe"]
    one = trained(*args)  # the pinned 3-step longrecipe run
    two = tmp_path / "two"
    res = subprocess.run(torchrun(two, *args, "train.sequence_parallel=2", f"train.distributed={mode}"), cwd=ROOT,
                         capture_output=True, text=True, timeout=1800, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    l1, l2 = train_log(one), train_log(two)
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


def test_plan_with_sequence_parallel(tmp_path):
    cfg = ROOT / "train" / "configs" / "llama3_8b_80k_longrecipe.yaml"
    res = cli("train", "--plan", str(cfg), "train.sequence_parallel=8", "train.micro_batch_size=1",
              "--gpus", "8", "--gpu-mem", "80GiB")
    assert "sequence parallel 8" in res.stdout, res.stdout + res.stderr
    res16 = cli("train", "--plan", str(cfg), "train.sequence_parallel=16", "--gpus", "16")
    assert res16.returncode == 2 and "32 attention heads and 8 key/value heads" in res16.stderr


@pytest.mark.integration
def test_sequence_parallel_composes_with_fsdp2_data_parallel(tmp_path, trained):
    # 4 processes: 2 data-parallel replicas x sequence parallel 2, parameters sharded over all 4 (FSDP2)
    args = [*SMALL, "train.steps=3", "train.method=longrecipe"]
    one, four = trained(*args), tmp_path / "four"
    cmd = torchrun(four, *args, "train.sequence_parallel=2", "train.distributed=fsdp2")
    cmd[cmd.index("--nproc_per_node") + 1] = "4"
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    for a, b in zip(train_log(one), train_log(four), strict=True):
        assert b["tokens"] == a["tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=2e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5, abs=2e-6)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["plain", "fsdp2"])
def test_background_save_holds_the_state_of_its_step(tmp_path, mode):
    # the files are written only after 20 more optimizer steps (tests/train/async_save_worker.py holds the writer):
    # the checkpoint still restores the weights of the step it was asked for, and is not one before it is written
    worker = str(ROOT / "tests" / "train" / "async_save_worker.py")
    res = subprocess.run([sys.executable, worker, str(tmp_path), mode],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800, env=TORCHRUN_ENV)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_match_one(tmp_path, mode, trained):
    args = [*SMALL, "train.steps=3", "train.batch_size=4"]
    one = trained(*args)
    two = tmp_path / "two"
    res = subprocess.run(torchrun(two, *args, f"train.distributed={mode}"), cwd=ROOT, capture_output=True,
                         text=True, timeout=1800, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    l1, l2 = [r["loss"] for r in train_log(one)], [r["loss"] for r in train_log(two)]
    assert l2 == pytest.approx(l1, abs=1e-4)
    a, b = weights(one), weights(two)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    # fp32 all-reduce sums in another order; Adam amplifies that on near-zero gradients (seen: 1.1e-5).
    # A wrong reduction would move weights by ~lr = 1e-3 per step.
    assert diff < 1e-4, diff
    assert a.keys() == b.keys()  # FSDP2 gathers the full model; the tied head is saved once, as by one process


@pytest.mark.integration
def test_fsdp2_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path):
    """The sharded checkpoint path: each process writes its own shard (DCP), the folder appears only once complete;
    resumed with the same 2 processes the run ends exactly where the uninterrupted one does, resumed with 1 process
    (DCP reshards on load) it ends there up to float reduction order; `longrecipe export` turns the sharded
    checkpoint into a Hugging Face directory holding exactly the checkpoint's weights."""
    args = [*SMALL, "train.batch_size=4", "train.steps=30", "train.save_every=10", "train.distributed=fsdp2"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    res = subprocess.run(torchrun(ref, *args), cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    args.append("train.async_save=true")  # the killed run saves in the background (DCP async_save)
    proc = subprocess.Popen(torchrun(out, *args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=TORCHRUN_ENV, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    workers = _descendants(proc.pid)  # torchrun's workers do not share its process group
    for pid in [proc.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    while any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not (out / "model").exists(), "the run finished before it could be killed"
    ckpt = sorted((out / "checkpoints").glob("step-*"))[0]
    names = {f.name for f in ckpt.iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "state.pt", "manifest.json"} <= names
    assert not (ckpt / "model.safetensors").exists()  # nothing gathered onto one process

    exported = tmp_path / "exported"
    res = cli("export", str(ckpt), "--out", str(exported))
    assert res.returncode == 0, res.stderr[-2000:]
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # torch's own reader, as a reference

    dcp_to_torch_save(str(ckpt), str(tmp_path / "ref.pt"))
    direct = torch.load(tmp_path / "ref.pt", weights_only=False)["model"]
    got = load_file(str(exported / "model.safetensors"))
    assert got and all(torch.equal(got[k], direct[f"model.{k}"]) for k in got)

    one = tmp_path / "one"
    shutil.copytree(out, one)
    res = subprocess.run(torchrun(out, *args), cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in train_log(out)] == [r["loss"] for r in train_log(ref)]

    res = cli("train", "--config", TRAIN_CONFIG, f"out={one}", *args, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    c = weights(one)
    assert all(torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-6) for k in a)
    assert [r["loss"] for r in train_log(one)] == pytest.approx([r["loss"] for r in train_log(ref)], rel=1e-4)
