"""Reliability and safety, tried as a user would: crafted and torn checkpoints, kill -9, re-runs into the same
folder, bad values, stale outputs, code that must never run, and results files that do not follow the schema."""

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
from conftest import ROOT, run_cli
from safetensors.torch import load_file, save_file

CONFIG = str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml")
SMALL = ["train.batch_size=2", "train.train_length=128", "train.target_length=512", "train.warmup=2",
         "train.threads=1", "train.lr=1e-3"]


def one_line_exit_2(res, *needles: str) -> str:
    """The contract for bad input: exit 2 and exactly one non-empty line on stderr holding every needle."""
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(err) == 1, res.stderr[-3000:]
    assert all(n in err[0] for n in needles), err[0]
    return err[0]


def log_steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ checkpoints
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


def test_crafted_checkpoint_never_runs_code(tmp_path, tiny_dir):
    out, marker = tmp_path / "run", tmp_path / "marker"
    ckpt = out / "checkpoints" / "step-00000002"
    ckpt.mkdir(parents=True)
    shutil.copy(tiny_dir / "model.safetensors", ckpt / "model.safetensors")
    with open(ckpt / "state.pt", "wb") as f:
        pickle.dump({"step": Payload(marker)}, f)
    _manifest(ckpt)  # a manifest that matches: only the loader stands between the payload and execution
    res = run_cli("train", "--config", CONFIG, f"out={out}", "train.steps=4", "train.save_every=2", *SMALL)
    one_line_exit_2(res, "state.pt: refused to load", "nothing in it was run")
    assert not marker.exists()


def _train_killed(out: Path, args: list[str], checkpoints: int) -> None:
    """Start a real training run and SIGKILL it once `checkpoints` complete checkpoints exist."""
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "train", "--config", CONFIG, f"out={out}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "checkpoints").glob("step-*/manifest.json"))) < checkpoints:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_torn_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    args = [*SMALL, "train.train_length=256", "train.steps=40", "train.save_every=3"]
    ref = tmp_path / "ref"
    assert run_cli("train", "--config", CONFIG, f"out={ref}", *args).returncode == 0
    out = tmp_path / "killed"
    _train_killed(out, args, checkpoints=2)
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert len(ckpts) == 2  # the newest complete checkpoint and the one before it

    hopeless = tmp_path / "hopeless"
    shutil.copytree(out, hopeless)
    for c in sorted((hopeless / "checkpoints").glob("step-*")):
        _cut(c / "state.pt")
    res = run_cli("train", "--config", CONFIG, f"out={hopeless}", *args)
    assert res.returncode == 2 and "no usable checkpoint" in res.stderr.splitlines()[-1], res.stderr[-2000:]

    _cut(ckpts[-1] / "model.safetensors")
    res = run_cli("train", "--config", CONFIG, f"out={out}", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming from {ckpts[0].name}" in res.stderr and "does not match its manifest" in res.stderr
    a, b = load_file(str(ref / "model" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert log_steps(out) == list(range(1, 41))


def test_rerun_without_checkpoint_restarts_log_and_finished_run_is_a_no_op(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # what a run killed before its first checkpoint leaves behind: log lines and no checkpoint
    (out / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2)))
    args = ["train", "--config", CONFIG, f"out={out}", "train.steps=3", *SMALL]
    assert run_cli(*args).returncode == 0
    assert log_steps(out) == [1, 2, 3] and 9.0 not in [json.loads(x)["loss"] for x in
                                                       (out / "train_log.jsonl").read_text().splitlines()]
    weights = out / "model" / "model.safetensors"
    stamp, log = weights.stat().st_mtime_ns, (out / "train_log.jsonl").read_text()
    again = run_cli(*args)
    assert again.returncode == 0 and "already holds the finished run" in again.stderr
    assert weights.stat().st_mtime_ns == stamp and (out / "train_log.jsonl").read_text() == log


@pytest.mark.parametrize("override,needle", [
    ("train.log_every=0", "train.log_every: 0 must be >= 1"),
    ("train.threads=-1", "train.threads: -1 must be >= 0"),
    ("rope.factor=-1", "rope.factor: -1.0 must be > 0"),
    ("train.save_every=-1", "train.save_every: -1 must be >= 0"),
    ("train.lr=.nan", "train.lr: expected a finite number"),
    ("train.steps=2.5", "train.steps: expected int"),
    ("data.keep_other=1.5", "data.keep_other: 1.5 must be <= 1"),
    ("eval.samples=0", "eval.samples: 0 must be >= 1"),
])
def test_bad_numbers_are_one_line_and_write_nothing(tmp_path, override, needle):
    out = tmp_path / "run"
    one_line_exit_2(run_cli("train", "--config", CONFIG, f"out={out}", override), needle)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- eval
def _eval(out: Path, *extra: str):
    return run_cli("eval", "--model", "tiny", "--suite", "passkey", "--samples", "3", "--out", str(out), *extra)


def _rows(out: Path) -> set[tuple]:
    data = json.loads((out / "results.json").read_text())
    return {(r["suite"], r["task"], r["context_length"], r["metric"]) for r in data["scores"]}


def test_rerun_with_other_lengths_keeps_the_union(tmp_path):
    assert _eval(tmp_path, "--lengths", "128").returncode == 0
    first = _rows(tmp_path)
    res = _eval(tmp_path, "--lengths", "256", "--suite", "passkey,niah")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(tmp_path)
    assert first < rows and {("passkey", "passkey", 128, "exact_match"), ("passkey", "passkey", 256, "exact_match"),
                             ("niah", "needle", 256, "substring")} <= rows
    one_line_exit_2(_eval(tmp_path, "--lengths", "256", "--seed", "7"), "different run (seed differs)")
    assert _rows(tmp_path) == rows


def _longbench(folder: Path, answer: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"input": "Who?", "context": "Some context words. " * 20, "answers": [answer], "length": 100,
           "dataset": "hotpotqa", "language": "en", "all_classes": None, "_id": "x"}
    (folder / "hotpotqa.jsonl").write_text(json.dumps(rec) + "\n")
    return folder


def test_other_data_is_refused_and_bad_data_writes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--model", "tiny", "--suite", "longbench", "--longbench-datasets", "hotpotqa", "--out", str(out)]
    data = _longbench(tmp_path / "lb", "alice")
    assert run_cli(*args, "--longbench-dir", str(data)).returncode == 0
    saved, results = (out / "eval_config.json").read_text(), (out / "results.json").read_text()
    _longbench(data, "bob")  # the same folder with other answers: old predictions must not be scored against them
    one_line_exit_2(run_cli(*args, "--longbench-dir", str(data)), "the data in longbench_dir differs")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hotpotqa.jsonl").write_text('{"input": "x", "context": "y", "length": 3}\n')
    fresh = tmp_path / "fresh"
    one_line_exit_2(run_cli(*args[:-1], str(fresh), "--longbench-dir", str(broken)), "missing field 'answers'")
    assert not fresh.exists()
    assert (out / "eval_config.json").read_text() == saved and (out / "results.json").read_text() == results


@pytest.mark.parametrize("extra,needle", [
    (["--samples", "0", "--lengths", "256"], "samples: 0 must be >= 1"),
    (["--lengths", "5"], "passkey: length 5 cannot hold the prompt"),
    (["--lengths", "256", "--niah-depths", "0"], "niah_depths: 0 must be >= 1"),
    (["--lengths", "256", "--batch-size", "0"], "batch_size: 0 must be >= 1"),
])
def test_bad_eval_values_are_one_line(tmp_path, extra, needle):
    out = tmp_path / "run"
    one_line_exit_2(_eval(out, *extra), needle)
    assert not out.exists()


def test_stale_predictions_are_refused(tmp_path):
    assert _eval(tmp_path, "--lengths", "256").returncode == 0
    preds = tmp_path / "predictions" / "passkey" / "passkey" / "256.jsonl"
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    rows[1]["outputs"] = ["00000"]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_exit_2(_eval(tmp_path, "--lengths", "256"), "sample 1 was predicted from another prompt")


def _remote_code_model(tmp_path: Path, tiny_dir: Path) -> tuple[Path, Path]:
    """The tiny model, its config and tokenizer pointing at custom code that would write a marker file."""
    model, marker = tmp_path / "remote", tmp_path / "marker"
    shutil.copytree(tiny_dir, model)
    (model / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
                                   "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as Evil\n"
                                   "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")
    for name, auto in (("config.json", {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.Evil"}),
                       ("tokenizer_config.json", {"AutoTokenizer": ["evil.EvilTokenizer", None]})):
        conf = json.loads((model / name).read_text())
        (model / name).write_text(json.dumps({**conf, "auto_map": auto}))
    return model, marker


def test_remote_code_never_runs_and_nothing_asks(tmp_path, tiny_dir):
    model, marker = _remote_code_model(tmp_path, tiny_dir)
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "eval", "--model", str(model), "--suite",
           "passkey,ruler", "--ruler-tasks", "niah_single_1", "--lengths", "256", "--samples", "2", "--out",
           str(tmp_path / "run")]
    res = subprocess.run(cmd, cwd=ROOT, input="y\ny\ny\n", capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TRUST_REMOTE_CODE": "1"})
    assert not marker.exists(), res.stderr[-2000:]
    assert "[y/N]" not in res.stdout + res.stderr and "custom code" not in res.stdout
    assert res.returncode in (0, 2), res.stderr[-2000:]  # loaded as plain Llama, or refused in one line


@pytest.mark.parametrize("damage", ["stray", "truncated"])
def test_damaged_weights_are_one_line(tmp_path, tiny_dir, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    if damage == "stray":
        (model / "model.safetensors").rename(model / "backup.safetensors")
        needle = "found backup.safetensors"
    else:
        _cut(model / "model.safetensors")
        needle = "truncated"
    one_line_exit_2(run_cli("eval", "--model", str(model), "--suite", "passkey", "--out", str(tmp_path / "o")),
                    needle)


@pytest.fixture(scope="module")
def task_manager():
    pytest.importorskip("lm_eval", reason="lm-eval is the 'eval' extra")
    from lm_eval.tasks import TaskManager

    return TaskManager()


def test_unsafe_code_marker_of_lm_eval_is_read(task_manager):
    from longrecipe.evaluate.general import unsafe_tasks

    unsafe = ["cruxeval_input", "longproc_pseudo_to_code_2k", "humaneval_multi_line_infilling", "humaneval"]
    assert unsafe_tasks(unsafe, task_manager) == sorted(unsafe)
    # groups and tags are followed to their tasks; ordinary tasks are not flagged
    assert "humaneval_multi_line_infilling" in unsafe_tasks(["humaneval_infilling"], task_manager)
    assert unsafe_tasks(["hellaswag", "arc_easy", "lambada_openai"], task_manager) == []


def test_code_task_refused_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    res = run_cli("eval", "--model", "tiny", "--suite", "general", "--general-tasks", "cruxeval_input",
                  "--out", str(out))
    one_line_exit_2(res, "'cruxeval_input' executes model-generated code", "--allow-code-execution")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------- merge
def test_merge_refuses_non_finite_and_keeps_out(tmp_path, tiny_dir):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    one_line_exit_2(run_cli("merge", "tiny", "tiny", "--weights", "nan", "nan", "--out", str(out)), "finite")
    broken = tmp_path / "nan-model"
    shutil.copytree(tiny_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    one_line_exit_2(run_cli("merge", str(broken), "tiny", "--out", str(out)), "non-finite values", name)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ------------------------------------------------------------------------------------------ reports and gate
def _results(scores: list) -> dict:
    return {"schema_version": 1, "run": {"id": "r", "created": "now", "command": "c", "git_sha": None,
                                         "git_dirty": None, "config": {}, "versions": {}, "seed": 1, "hardware": {}},
            "model": {"path": "m"}, "backend": "hf", "scores": scores}


def _row(value, length=512, task="passkey", suite="passkey", **kw) -> dict:
    return {"suite": suite, "task": task, "metric": "exact_match", "value": value, "context_length": length,
            "depth": None, "n": 10, **kw}


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("data,needle", [
    ([], "expected a JSON object, got list"),
    (_results([_row("high")]), "scores[0].value: expected float"),
    (_results([_row(1.0, suite="untracked", task="t", depth="deep")]), "scores[0].depth: expected float or null"),
    (_results([_row(1.0, extra=1)]), "scores[0]: unknown field 'extra'"),
    ({**_results([]), "run": "x"}, "run: expected an object"),
])
def test_results_are_validated_on_read(tmp_path, data, needle):
    bad = _write(tmp_path / "bad" / "results.json", data)
    good = _write(tmp_path / "good" / "results.json", _results([_row(50.0)]))
    one_line_exit_2(run_cli("report", str(bad.parent), "--out", str(tmp_path / "rep")), str(bad), needle)
    one_line_exit_2(run_cli("check", str(bad.parent), "--baseline", str(good)), needle)
    one_line_exit_2(run_cli("check", str(good.parent), "--baseline", str(bad)), needle)


def test_check_tolerance_empty_run_and_table(tmp_path):
    base = _write(tmp_path / "base.json", _results([_row(64.9), _row(40.0, length=1024)]))
    run = _write(tmp_path / "run" / "results.json", _results([_row(63.9), _row(39.0, length=1024)]))
    res = run_cli("check", str(run.parent), "--baseline", str(base), "--tolerance", "1.0")
    assert res.returncode == 0, res.stdout  # both dropped exactly 1.0 point
    worse = _write(tmp_path / "worse" / "results.json", _results([_row(63.8)]))
    res = run_cli("check", str(worse.parent), "--baseline", str(base))
    assert res.returncode == 1
    table = res.stdout.splitlines()
    assert any(" 512 " in x and "-1.10" in x for x in table) and any(" 1024 " in x and "missing" in x for x in table)
    assert "512.0" not in res.stdout and "nan" not in res.stdout
    empty = _write(tmp_path / "empty" / "results.json", _results([]))
    res = run_cli("check", str(empty.parent), "--baseline", str(base))
    assert res.returncode == 1 and "2 of 2 tracked scores" in res.stdout
    one_line_exit_2(run_cli("check", str(run.parent), "--baseline", str(empty)), "no tracked scores")
