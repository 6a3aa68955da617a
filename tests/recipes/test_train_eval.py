"""Evaluation during training (train.eval: train/recipe.py calls longrecipe/recipes/train_eval.py between steps):
rows at step 0 and every N steps with the training tokens and FLOPs; the in-training scores are `longrecipe eval`'s
(at step 0 those of the base model, at the last step those of the saved model); a stopped run resumes its curve
without a duplicate or a gap; `report` draws the curves and `check --curve` gates them point by point."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from helpers import SMALL, TRAIN_CONFIG, cli, interrupted_line, lines, signal_when

from longrecipe.train.flops import training_flops

EVAL = ("train.eval.every=2", "train.eval.samples=4", "train.eval.suites=passkey,niah",
        "train.eval.options.niah_depths=2")  # the lengths: the base's window (256) and the target (512)


def curve(out: Path) -> list[dict]:
    return [json.loads(x) for x in lines(out / "train_eval.jsonl")]


def scores(run: Path) -> dict[tuple, float]:
    rows = json.loads((run / "results.json").read_text())["scores"]
    return {(r["suite"], r["task"], r["context_length"], r["depth"]): r["value"] for r in rows}


def at(rows: list[dict], step: int) -> dict[tuple, float]:
    return {(r["suite"], r["task"], r["context_length"], r["depth"]): r["value"] for r in rows if r["step"] == step}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train-eval") / "run"
    res = cli("train", "--config", TRAIN_CONFIG, f"out={out}", *SMALL, "train.steps=4", *EVAL)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_the_curve_holds_every_evaluation_with_tokens_and_flops(trained):
    rows = curve(trained)
    assert sorted({r["step"] for r in rows}) == [0, 2, 4]
    config = json.loads((trained / "model" / "config.json").read_text())
    for r in rows:
        assert r["tokens"] == r["step"] * 2 * 128  # steps x batch x train length (SMALL)
        assert r["flops"] == pytest.approx(r["step"] * training_flops(config, 128, 2))
        assert 0 <= r["value"] <= 100 and r["n"] == (4 if r["suite"] == "passkey" else 1)  # NIAH: 1 per cell
    assert sorted((r["suite"], r["context_length"], r["depth"]) for r in rows if r["step"] == 4) == [
        ("niah", 256, 0.0), ("niah", 256, 100.0), ("niah", 512, 0.0), ("niah", 512, 100.0), ("passkey", 256, None),
        ("passkey", 512, None)]


def start_model(tiny_dir: Path, out: Path) -> Path:
    """The model training starts from: the base's weights with the run's RoPE (ntk-at-target at 512, as
    train/recipe.py loads it)."""
    from transformers import AutoConfig

    from longrecipe.train import rope

    shutil.copytree(tiny_dir, out)
    rope.apply(AutoConfig.from_pretrained(tiny_dir), "ntk-at-target", 512).save_pretrained(out)
    return out


def test_the_scores_during_training_are_the_eval_commands(trained, tiny_dir, tmp_path):
    """Step 0 is the model training starts from, the last step the saved model: `longrecipe eval` of each, with
    the same keys, gives the same numbers (same samples, same greedy answers, same scorers)."""
    rows = curve(trained)
    same = ("--suite", "passkey,niah", "--lengths", "256,512", "--samples", "4", "--niah-depths", "2")
    for step, model in ((0, str(start_model(tiny_dir, tmp_path / "start"))), (4, str(trained / "model"))):
        res = cli("eval", "--model", model, *same, "--out", str(tmp_path / str(step)))
        assert res.returncode == 0, res.stderr[-2000:]
        assert at(rows, step) == scores(tmp_path / str(step)), step
    res = cli("eval", "--model", "tiny", *same, "--allow-extrapolation", "--out", str(tmp_path / "base"))
    assert res.returncode == 0, res.stderr[-2000:]
    # the evaluator runs the model being trained, not a reload: at step 0 the run's RoPE is already in place, and
    # with it the base passes no passkey at its own window (a finding the curves show)
    assert scores(tmp_path / "base")[("passkey", "passkey", 256, None)] == 100.0
    assert at(rows, 0)[("passkey", "passkey", 256, None)] == 0.0


@pytest.mark.integration
def test_a_stopped_run_resumes_its_curve_without_a_gap_or_a_duplicate(trained, tmp_path):
    out = tmp_path / "run"
    args = ("train", "--config", TRAIN_CONFIG, f"out={out}", *SMALL, "train.steps=4", *EVAL)
    evaluated = lambda: (out / "train_eval.jsonl").exists() and any(  # noqa: E731
        '"step": 2' in x for x in lines(out / "train_eval.jsonl"))
    stopped = signal_when(args, evaluated, signal.SIGINT)
    interrupted_line(stopped, 130)
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert curve(out) == curve(trained)  # the same rows, in the same order, once each


def test_report_draws_the_curves_and_check_gates_them(trained, tmp_path):
    res = cli("report", str(trained), "--out", str(tmp_path / "report"))
    assert res.returncode == 2 and "no results file" in res.stderr  # a training run alone has no results.json
    res = cli("eval", "--model", str(trained / "model"), "--suite", "passkey", "--lengths", "256", "--samples", "2",
              "--out", str(trained / "eval"))
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli("report", str(trained / "eval"), "--out", str(tmp_path / "report"))
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("train_eval_curves", "train_eval_flops"):  # against training tokens, and against FLOPs
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 10_000
    folder = tmp_path / "pinned"  # a folder as the baseline: its train_eval.jsonl
    assert cli("check", str(trained), "--curve", "--baseline", str(folder), "--update-baseline").returncode == 0
    assert (folder / "train_eval.jsonl").read_text() == (trained / "train_eval.jsonl").read_text()
    assert cli("check", str(trained), "--curve", "--baseline", str(folder)).returncode == 0
    other = tmp_path / "other"  # the same curve, said to be made with other train.eval settings
    other.mkdir()
    shutil.copy(trained / "train_eval.jsonl", other)
    (other / "config.yaml").write_text((trained / "config.yaml").read_text().replace("samples: 4", "samples: 5"))
    res = cli("check", str(other), "--curve", "--baseline", str(trained))
    assert res.returncode == 2 and "made with other settings: train.eval" in res.stderr, res.stderr
    assert cli("check", str(other), "--curve", "--baseline", str(trained), "--allow-setting-change").returncode == 0
    base = tmp_path / "baseline.jsonl"
    assert cli("check", str(trained), "--curve", "--baseline", str(base), "--update-baseline").returncode == 0
    ok = cli("check", str(trained), "--curve", "--baseline", str(base))
    assert ok.returncode == 0 and ok.stderr.strip() == "check: ok: 18 tracked rows within 1", ok.stderr
    rows = curve(trained)
    worse = [r for r in rows if r["step"] < 4]  # an unfinished run, and one point 30 points lower
    worse[-1] = {**worse[-1], "value": worse[-1]["value"] - 30}
    (tmp_path / "worse.jsonl").write_text("".join(json.dumps(r) + "\n" for r in worse))
    bad = cli("check", str(tmp_path / "worse.jsonl"), "--curve", "--baseline", str(base))
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.strip() == "check: FAIL: 6 tracked rows missing, 1 dropped by more than 1 (of 18)"
    assert "@step4" in bad.stdout and "@step2" in bad.stdout
    (tmp_path / "torn.jsonl").write_text('{"step": 0}\n')
    for args, says in (((str(tmp_path / "nowhere"),), "train_eval.jsonl: no such file"),
                       ((str(tmp_path / "torn.jsonl"),), "torn.jsonl:1: no 'tokens' field")):
        res = cli("check", *args, "--curve", "--baseline", str(base))
        assert res.returncode == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
