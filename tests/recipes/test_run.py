"""`longrecipe run` (longrecipe/recipes/run.py): train, evaluate and report in one command; the real-model study
configs build valid eval configs and fit one GPU."""

from __future__ import annotations

import json
import re
import signal

import pytest
from helpers import TRAIN_CONFIG, cli, interrupted_line, signal_when

from longrecipe.base import config as C
from longrecipe.train.config import RunConfig


@pytest.mark.parametrize("name", ["smollm2_32k_flt.yaml", "smollm2_32k_longrecipe.yaml"])
def test_smollm2_study_configs_validate_as_run_builds_them_and_fit_one_gpu(name):
    """The real-model study configs (#18's GPU step): the eval section `run` builds from them is a valid eval config
    (11 non-QA RULER tasks, 8k-32k, chat template), and the memory plan fits one 80 GiB GPU."""
    from helpers import ROOT

    from longrecipe.base import model_dirs
    from longrecipe.evaluate.runner import validate
    from longrecipe.recipes.run import eval_lengths, run_eval_config

    try:
        model_dirs.resolve("smollm2-135m")
    except FileNotFoundError as err:
        pytest.skip(f"SmolLM2 could not be had here: {err}")
    path = ROOT / "train" / "configs" / name
    cfg = C.load(RunConfig, path).validate()
    ecfg = run_eval_config(cfg, eval_lengths(cfg), cfg.model.path, "base")
    validate(ecfg)
    assert ecfg.lengths == (8192, 16384, 32768) and ecfg.chat_template and len(ecfg.options["ruler_tasks"]) == 11
    assert cfg.train.target_length == 32768 and cfg.train.train_length == (32768 if "flt" in name else 9830)
    res = cli("train", "--plan", str(path), "--gpus", "1", "--gpu-mem", "80GiB")
    assert res.returncode == 0 and "fits:" in res.stdout, res.stdout + res.stderr


@pytest.mark.integration
def test_run_trains_evaluates_and_reports_after_a_ctrl_c(tmp_path):
    """Ctrl-C while `run` evaluates (a real process): exit 130, one line, no traceback; the same command then
    finishes the run (training done, the written predictions kept)."""
    args = ("run", "--config", TRAIN_CONFIG, f"out={tmp_path}", "train.steps=2", "train.batch_size=2",
            "train.train_length=128", "train.target_length=512", "train.threads=1", "eval.suites=passkey,niah",
            "eval.samples=4", "eval.options.niah_depths=2", "eval.options.batch_size=4", "train.eval.every=1",
            "train.eval.samples=2")
    written = lambda: any(f.stat().st_size for f in (tmp_path / "eval").rglob("*.jsonl"))  # noqa: E731
    stopped = signal_when(args, lambda: (tmp_path / "eval").exists() and written(), signal.SIGINT)
    assert re.search(r"^longrecipe run: interrupted after \d+ new samples; the same command resumes$",
                     interrupted_line(stopped, 130))
    assert (tmp_path / "model" / "model.safetensors").is_file() and not (tmp_path / "report").exists()
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "already holds the finished run" in res.stderr  # the training is not done again
    for name in ("trained", "base"):
        data = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert {r["context_length"] for r in data["scores"] if r["suite"] == "passkey"} == {256, 512}
        assert len([r for r in data["scores"] if r["suite"] == "niah"]) == 2 * 2  # any eval key: 2 depths x 2
        saved = json.loads((tmp_path / "eval" / name / "eval_config.json").read_text())
        assert (saved["niah_depths"], saved["batch_size"]) == (2, 4)
    assert json.loads((tmp_path / "eval" / "trained" / "results.json").read_text())["model"][
        "max_position_embeddings"] == 512
    for f in ("loss_curves.png", "train_eval_curves.png", "niah_trained.png", "niah_base.png", "scores.csv"):
        assert (tmp_path / "report" / f).is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "config.yaml").is_file()
