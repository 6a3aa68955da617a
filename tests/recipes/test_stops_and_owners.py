"""Real processes and real signals (base/interrupt.py, base/runlock.py through the commands): two runs started into
one directory (one runs, the other is refused in one line naming the holder), Ctrl-C and SIGTERM during `train` and
`eval` (exit 130 / 143, one line, no traceback), and the re-run that continues exactly: the uninterrupted run's
bit-identical weights; no written sample computed again. (`run` and `demo` are stopped the same way in their own
tests: test_run.py, test_demo.py.)"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    LONGRECIPE,
    ROOT,
    SMALL,
    TRAIN_CONFIG,
    cli,
    err_lines,
    holder,
    interrupted_line,
    one_line_exit_2,
    signal_when,
    train_log,
    weights,
)

pytestmark = pytest.mark.integration

RESUMED_RUN = ("train.train_length=256", "train.steps=30", "train.save_every=3")  # the kill test's reference run


def test_two_trainings_into_one_folder_one_runs_the_other_is_refused_then_sigterm_stops_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--config", TRAIN_CONFIG, f"out={out}", *SMALL, "train.train_length=256", "train.steps=400"]
    procs = [subprocess.Popen([LONGRECIPE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    deadline = time.monotonic() + 600
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = next(p for p in procs if p.poll() is not None)
    holder = next(p for p in procs if p is not refused)
    err = refused.communicate()[1]
    try:
        assert refused.returncode == 2 and err_lines(subprocess.CompletedProcess([], 2, "", err)) == [
            f"longrecipe train: error: {out} is in use by pid {holder.pid} (one run per directory): wait for it "
            f"to finish, stop it, or use another output directory"], err[-2000:]
        while not (out / "train_log.jsonl").exists() and holder.poll() is None:
            time.sleep(0.02)
    finally:
        holder.send_signal(signal.SIGTERM)  # a scheduler's stop
        _, held_err = holder.communicate(timeout=600)
    res = subprocess.CompletedProcess([], holder.returncode, "", held_err)
    line = interrupted_line(res, 143)
    step = int(re.search(r"at step (\d+) of 400 \(saved\)", line).group(1))
    assert step < 400 and [r["step"] for r in train_log(out)] == list(range(1, step + 1))  # one writer: in order
    assert (out / "checkpoints" / f"step-{step:08d}").is_dir()


def test_ctrl_c_during_training_then_the_same_command_gives_the_uninterrupted_weights(tmp_path, trained):
    ref = trained(*RESUMED_RUN)
    out = tmp_path / "run"
    args = ["train", "--config", TRAIN_CONFIG, f"out={out}", *SMALL, *RESUMED_RUN]
    res = signal_when(args, lambda: (out / "train_log.jsonl").exists(), signal.SIGINT)
    line = interrupted_line(res, 130)
    assert re.search(r"longrecipe train: interrupted at step \d+ of 30 \(saved\); the same command resumes", line)
    assert not (out / "model").exists()
    again = cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in train_log(out)] == [r["loss"] for r in train_log(ref)]


def _rows(out: Path) -> dict[str, list[int]]:
    return {str(f.relative_to(out)): [json.loads(x)["index"] for x in f.read_text().splitlines()]
            for f in sorted((out / "predictions").rglob("*.jsonl"))}


def test_sigterm_during_eval_then_the_same_command_computes_only_what_was_not_written(tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128,256", "--samples", "24",
            "--batch-size", "2", "--out", str(out)]
    res = signal_when(args, lambda: sum(map(len, _rows(out).values())) >= 3 if (out / "predictions").exists()
                      else False, signal.SIGTERM)
    line = interrupted_line(res, 143)
    k = int(re.search(r"longrecipe eval: interrupted after (\d+) new samples; the same command resumes", line)[1])
    before = {f: (out / f).read_text() for f in _rows(out)}
    done = sum(t.count("\n") for t in before.values())
    assert k == done and 3 <= done < 48 and not (out / "results.json").exists()
    assert all(t.endswith("\n") for t in before.values())  # whole lines only
    again = cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    for f, text in before.items():
        assert (out / f).read_text().startswith(text)  # written samples kept verbatim
    assert all(sorted(v) == list(range(24)) for v in _rows(out).values()) and len(_rows(out)) == 2
    assert sum(int(n) for n in re.findall(r"(\d+) samples in", again.stdout)) == 48 - done


def test_every_writing_command_refuses_a_folder_another_process_holds(tmp_path):
    """One line naming the folder and the holder's pid, exit 2, nothing in the folder changed: eval, train, run,
    demo into a held run folder; merge, export and tiny-base into a model folder whose lock (beside it) is held."""
    from longrecipe.base import model_dirs

    run = tmp_path / "held"
    run.mkdir()
    (run / "keep.txt").write_text("untouched")
    tiny = str(model_dirs.resolve("tiny"))
    cases = {
        "eval": ("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128", "--samples", "2",
                 "--out", str(run)),
        "train": ("train", "--config", TRAIN_CONFIG, f"out={run}", *SMALL, "train.steps=2"),
        "run": ("run", "--config", TRAIN_CONFIG, f"out={run}", *SMALL, "train.steps=2", "eval.suites=passkey"),
        "demo": ("demo", "--quick", "--out", str(run)),
    }
    proc = holder(run)
    try:
        for name, args in cases.items():
            res = cli(*args)
            one_line_exit_2(res, f"{run} is in use by pid {proc.pid}")
            assert sorted(p.name for p in run.iterdir()) == [".lock", "keep.txt"], name
    finally:
        proc.kill()
        proc.wait()
    model = tmp_path / "merged"
    proc = holder(model, beside=True)
    try:
        for args in (("merge", tiny, tiny, "--out", str(model)), ("export", str(run), "--out", str(model)),
                     ("tiny-base", "--out", str(model), "--steps", "1")):
            one_line_exit_2(cli(*args), f"{model} is in use by pid {proc.pid}")
            assert not model.exists(), args[0]
    finally:
        proc.kill()
        proc.wait()
