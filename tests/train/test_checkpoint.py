"""Checkpoints (train/checkpoint.py): exact resume after kill -9 (background saves included), torn and crafted
checkpoints, re-runs into the same folder, `longrecipe export` of a single-process checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, SMALL, TRAIN_CONFIG, cli, one_line_exit_2
from safetensors.torch import load_file


def log_steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]

class Payload:
    """Unpickling this object writes a marker file: what a crafted checkpoint would do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))

def _manifest(folder: Path) -> None:
    from longrecipe.train.recipe import MANIFEST, _file_entry

    files = {f.name: _file_entry(f) for f in sorted(folder.iterdir())}
    (folder / MANIFEST).write_text(json.dumps({"step": 2, "files": files}))

def _train_killed(out: Path, args: list[str], checkpoints: int) -> None:
    """Start a real training run and SIGKILL it once `checkpoints` complete checkpoints exist."""
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "train", "--config", TRAIN_CONFIG, f"out={out}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and len(list((out / "checkpoints").glob("step-*/manifest.json"))) < checkpoints:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"

def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_crafted_checkpoint_never_runs_code(tmp_path, tiny_dir):
    out, marker = tmp_path / "run", tmp_path / "marker"
    ckpt = out / "checkpoints" / "step-00000002"
    ckpt.mkdir(parents=True)
    shutil.copy(tiny_dir / "model.safetensors", ckpt / "model.safetensors")
    with open(ckpt / "state.pt", "wb") as f:
        pickle.dump({"step": Payload(marker)}, f)
    _manifest(ckpt)  # a manifest that matches: only the loader stands between the payload and execution
    res = cli("train", "--config", TRAIN_CONFIG, f"out={out}", "train.steps=4", "train.save_every=2", *SMALL)
    one_line_exit_2(res, "state.pt: refused to load", "nothing in it was run")
    assert not marker.exists()


# The uninterrupted reference of the kill tests (made once: tests/conftest.py `trained`).
KILLED_RUN = ("train.train_length=256", "train.steps=30", "train.save_every=3")


@pytest.mark.integration
def test_torn_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, trained):
    args = [*SMALL, *KILLED_RUN]
    ref = trained(*args)
    out = tmp_path / "killed"
    _train_killed(out, args, checkpoints=2)
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert len(ckpts) == 2  # the newest complete checkpoint and the one before it

    hopeless = tmp_path / "hopeless"
    shutil.copytree(out, hopeless)
    for c in sorted((hopeless / "checkpoints").glob("step-*")):
        _cut(c / "state.pt")
    res = cli("train", "--config", TRAIN_CONFIG, f"out={hopeless}", *args)
    assert res.returncode == 2 and "no usable checkpoint" in res.stderr.splitlines()[-1], res.stderr[-2000:]

    _cut(ckpts[-1] / "model.safetensors")
    res = cli("train", "--config", TRAIN_CONFIG, f"out={out}", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming from {ckpts[0].name}" in res.stderr and "does not match its manifest" in res.stderr
    a, b = load_file(str(ref / "model" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert log_steps(out) == list(range(1, 31))


def test_rerun_without_checkpoint_restarts_log_and_finished_run_is_a_no_op(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # what a run killed before its first checkpoint leaves behind: log lines and no checkpoint
    (out / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2)))
    args = ["train", "--config", TRAIN_CONFIG, f"out={out}", "train.steps=3", *SMALL]
    assert cli(*args).returncode == 0
    assert log_steps(out) == [1, 2, 3] and 9.0 not in [json.loads(x)["loss"] for x in
                                                       (out / "train_log.jsonl").read_text().splitlines()]
    weights = out / "model" / "model.safetensors"
    stamp, log = weights.stat().st_mtime_ns, (out / "train_log.jsonl").read_text()
    again = cli(*args)
    assert again.returncode == 0 and "already holds the finished run" in again.stderr
    assert weights.stat().st_mtime_ns == stamp and (out / "train_log.jsonl").read_text() == log


@pytest.mark.integration
def test_kills_at_random_moments_and_during_checkpoint_writes_then_resume_is_bit_identical(tmp_path):
    """benchmarks/chaos_train.py, small: kill -9 once a random moment into training and once while a background
    save is half-written (each time the lock is freed by the kernel and the same command resumes at once), then run
    to the end: weights bit-identical and the log's losses, lr, norms and tokens equal to an uninterrupted run's,
    its elapsed time continuing from the checkpoint. (The 10-kill figures: benchmarks/RESULTS.md.)"""
    figures = tmp_path / "figures.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos_train.py"), "--kills", "2", "--seed", "2",
                          "--steps", "45", "--out", str(tmp_path / "chaos"), "--json", str(figures)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    got = json.loads(figures.read_text())
    assert got["identical"] and got["kills"] == 2 and got["during_checkpoint_write"] >= 1, got
    assert [k["mode"] for k in got["per_kill"]] == ["random", "during-save"]


def test_crafted_sharded_checkpoint_metadata_is_refused(tmp_path):
    """DCP's `.metadata` is a pickle: ours is read through an allowlist, so a crafted one is refused, never run."""
    from longrecipe.train.checkpoint import SafeReader

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (ckpt / ".metadata").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="refused to load"):
        SafeReader(str(ckpt)).read_metadata()
    assert not marker.exists()


@pytest.mark.integration
def test_export_of_a_single_process_checkpoint_and_bad_input(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "longrecipe"), "train", "--config", TRAIN_CONFIG,
                             f"out={out}", *SMALL, "train.steps=400", "train.save_every=5"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"
    res = cli("export", str(out), "--out", str(tmp_path / "hf"))
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = sorted((out / "checkpoints").glob("step-*"))[-1]
    tied = lambda d: {"model.embed_tokens.weight" if k == "lm_head.weight" else k: v for k, v in d.items()}  # noqa: E731
    saved = tied(load_file(str(ckpt / "model.safetensors")))  # the tied pair is stored under either name
    got = tied(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in got)
    conf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert conf["max_position_embeddings"] == 512  # the run's RoPE target, not the base's window
    res = cli("export", str(out), "--out", str(tmp_path / "hf"))
    assert res.returncode == 2 and "not empty" in res.stderr
    res = cli("export", str(tmp_path / "nothing"), "--out", str(tmp_path / "hf2"))
    assert res.returncode == 2 and not (tmp_path / "hf2").exists()


def test_a_resumed_run_removes_what_killed_saves_left(tmp_path):
    """A save killed mid-write leaves its hidden folder (io.atomic_dir's `.step-N.*`, DCP's `.partial-step-N`); the
    next run, which owns the folder (base/runlock.py), removes them before it saves, and keeps every checkpoint."""
    from types import SimpleNamespace

    from longrecipe.train.checkpoint import Checkpointer

    ckpts = tmp_path / "checkpoints"
    for name in (".step-00000003.x1y2", ".partial-step-00000006", "step-00000003"):
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "model.safetensors").write_bytes(b"w")
    Checkpointer(tmp_path, SimpleNamespace(main=True))
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000003"]
