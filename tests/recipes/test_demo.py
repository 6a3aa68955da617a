"""`longrecipe demo` (longrecipe/recipes/demo.py): the quick study end to end and resumed, the shared post-training,
and a run saved before a setting existed."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
import torch
from helpers import cli, interrupted_line, signal_when

METHODS = ("base", "flt", "pose", "randpos", "longrecipe")


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, str]:
    """One `longrecipe demo --quick --stages --seed 1` (every method trained, LongRecipe with analysis, replay and
    merge; every model evaluated; the report): ~2 minutes on 2 cores, run once for the tests below, which only
    read it (the last one resumes it)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    args = ("demo", "--quick", "--out", str(out), "--stages", "--seed", "1")
    # first stopped by a scheduler's SIGTERM in its first training (a real process), then the same command finishes
    QUICK_STOPS.append(signal_when(args, lambda: (out / "train" / "flt" / "train_log.jsonl").exists(), signal.SIGTERM))
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


QUICK_STOPS: list = []  # the quick fixture's SIGTERM-stopped first run


@pytest.mark.integration
def test_quick_demo_stopped_by_sigterm_says_where_and_the_same_command_finishes(quick):
    out, _ = quick
    line = interrupted_line(QUICK_STOPS[0], 143)
    assert re.fullmatch(r"longrecipe demo: interrupted at step [1-4] of 4( \(saved\))?; the same command resumes", line)
    assert (out / "train" / "flt" / "model" / "model.safetensors").is_file()  # finished by the re-run


@pytest.mark.integration
def test_quick_demo_reports_every_method_in_every_table_and_plot(quick):
    out, _ = quick
    rep = out / "report"
    for name in ("table1", "ruler_by_length", "compute", "table3"):
        for ext in ("md", "tex", "csv"):
            assert (rep / f"{name}.{ext}").is_file(), name
    table1 = (rep / "table1.md").read_text()
    ruler = (rep / "ruler_by_length.md").read_text()
    for m in METHODS:
        assert f"| {m} |" in table1 and f"| {m} |" in ruler, m
        assert (rep / f"niah_{m}.png").stat().st_size > 5_000
    compute = (rep / "compute.md").read_text()
    for m in ("flt", "pose", "randpos", "longrecipe"):
        assert f"| {m} |" in compute
    for plot in ("ruler_vs_length", "loss_curves", "table1_bars", "train_eval_curves"):
        assert (rep / f"{plot}.png").stat().st_size > 5_000 and (rep / f"{plot}.svg").is_file()
    # each extension's passkey during training (train.eval at steps 0 and 4), at the window and the target
    for stage in ("flt", "pose", "randpos", "longrecipe-30pct/extension"):
        rows = [json.loads(x) for x in (out / "train" / stage / "train_eval.jsonl").read_text().splitlines()]
        assert sorted((r["step"], r["context_length"]) for r in rows) == [  # once each (flt was stopped, resumed)
            (s, n) for s in (0, 4) for n in (512, 2048)], stage
    # the general suite at the native length: held-out perplexity and the short tasks, for every model
    assert "longrecipe_heldout" in table1 and "longrecipe_cloze" in table1
    assert "after merge" in (rep / "table3.md").read_text()


@pytest.mark.integration
def test_quick_demo_writes_every_resolved_config(quick):
    """Every run wrote its resolved config (target 4x the base's window); LongRecipe used the analysis' anchors and
    the same sample count as FLT."""
    import yaml

    out, _ = quick
    conf = json.loads((out / "demo_config.json").read_text())
    assert conf["quick"] is True and conf["seed"] == 1 and conf["target"] == 2048 and conf["lengths"] == [512, 1024]
    assert conf["base"] == "tiny-v2" and "vt" not in conf["ruler_tasks"]  # the study's base: the embedded v2
    lr = yaml.safe_load((out / "train" / "longrecipe-30pct" / "extension" / "config.yaml").read_text())
    assert lr["data"]["selection"] == "impactful" and lr["data"]["anchors_from"].endswith("token_types.json")
    flt = yaml.safe_load((out / "train" / "flt" / "config.yaml").read_text())
    assert flt["train"]["train_length"] == 2048 and lr["train"]["train_length"] == 614 and flt["train"]["seed"] == 1
    assert flt["train"]["steps"] * flt["train"]["batch_size"] == lr["train"]["steps"] * lr["train"]["batch_size"]
    merged = json.loads((out / "train" / "longrecipe-30pct" / "merged" / "config.json").read_text())
    assert merged["max_position_embeddings"] == 2048


@pytest.mark.integration
def test_quick_demo_keeps_the_seed_and_a_report_over_seeds_rebuilds_from_it(quick, tmp_path):
    """The seed's small results are kept; a report over seeds is rebuilt from those folders alone (several seeds:
    tests/reports/test_reports.py)."""
    out, _ = quick
    rep = out / "report"
    kept = rep / "seeds" / "seed-1"
    assert sorted(p.name for p in kept.iterdir()) == sorted([*METHODS, "study"])
    assert sorted(p.name for p in (kept / "study").iterdir()) == ["longrecipe-extension", "longrecipe-replay",
                                                                 "study.json"]
    again = cli("report", "--seeds", str(kept), "--out", str(tmp_path / "r"))
    assert again.returncode == 0, again.stderr
    one = (tmp_path / "r" / "passkey_by_length.md").read_text()
    assert "over 1 seed." in one and all(f"| {m} |" in one for m in METHODS)
    assert (tmp_path / "r" / "table3.md").read_text() == (rep / "table3.md").read_text()


@pytest.mark.integration
def test_quick_demo_resumes_without_retraining_or_reevaluating(quick):
    """A second run of the same command: nothing is retrained or re-evaluated, the report is rebuilt identically."""
    out, first = quick
    assert "train flt" in first and "eval base" in first  # what a resumed run must not print again
    before = (out / "report" / "table1.md").read_text()
    res2 = cli("demo", "--quick", "--out", str(out), "--stages", "--seed", "1")
    assert res2.returncode == 0 and "train flt" not in res2.stdout and "eval base" not in res2.stdout
    assert (out / "report" / "table1.md").read_text() == before


def test_same_post_training_replays_and_merges_a_baseline_and_counts_its_compute(tmp_path):
    """--same-post-training: a baseline gets LongRecipe's replay (native length, replay lr) and the merge with the
    original model: the merged weights are merge_weight x replayed + (1 - merge_weight) x base, and the compute
    table counts the replay in the baseline's FLOPs."""
    import yaml
    from safetensors.torch import load_file

    from longrecipe.base import model_dirs
    from longrecipe.recipes.demo import Demo, DemoConfig
    from longrecipe.recipes.study import DEMO_RECORD
    from longrecipe.reports.study import compute_table

    d = Demo(DemoConfig.quick_config(out=str(tmp_path / "demo"), same_post_training=True))
    base = model_dirs.resolve("tiny-v2")
    post = d.post_train("pose-post", base)  # the base stands in for an extended model
    conf = yaml.safe_load((tmp_path / "demo" / "train" / "pose-post" / "replay" / "config.yaml").read_text())
    assert conf["train"]["stage"] == "replay" and conf["train"]["train_length"] == 512
    assert conf["train"]["steps"] == 2 and conf["train"]["lr"] == d.cfg.replay_lr
    rep, merged, orig = (load_file(str(p / "model.safetensors")) for p in (post["replay"], post["merged"], base))
    moved = [k for k in orig if not torch.equal(rep[k], orig[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(merged[k], 0.5 * rep[k] + 0.5 * orig[k], rtol=1e-5, atol=1e-6)
    d.compute["pose"] = {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 1e12, "wall_s": 1.0}
    d.compute["flt"] = {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 5e12, "wall_s": 4.0}
    table = compute_table(d.compute, 0.3, DEMO_RECORD)
    replay = d.compute["pose-post/replay"]
    assert table.loc["pose", "FLOPs"] == 1e12 + replay["flops"] and replay["flops"] > 0
    assert table.loc["pose", "train tokens"] == 4912 + 2 * 4 * 512 and table.loc["flt", "FLOPs"] == 5e12


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default():
    """demo_config.json written before plain_fraction / same_post_training existed: missing = default, so the run
    resumes; a different value, or another changed setting, is named."""
    import dataclasses

    from longrecipe.recipes.demo import DemoConfig, changed_settings

    cfg = DemoConfig.quick_config(seed=1).resolved(512)
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    old = {k: v for k, v in saved.items() if k not in ("plain_fraction", "same_post_training")}
    assert changed_settings(cfg, saved) == [] and changed_settings(cfg, old) == []
    assert changed_settings(dataclasses.replace(cfg, plain_fraction=0.25), old) == ["plain_fraction"]
    assert changed_settings(cfg, {**saved, "steps": 999, "stages": True}) == ["steps"]
