"""Reports (reports/): golden Markdown from fixture results, every plot, LongBench tables, exports, reports over
seeds, the notebook, and the committed reports rebuilt from their committed results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, cli

from longrecipe.base.schema import ModelInfo, Results, ScoreRow, run_info

GOLDEN_TABLE1 = """| run | NIAH(M) | RULER | longrecipe_cloze (acc) |
|---|---|---|---|
| base | 31.2 | 31.2 | **60.0** |
| longrecipe | **76.2** | **76.2** | 58.0 |
"""

def _seed_run(folder: Path, passkey: dict[int, float], window: int) -> Path:
    rows = tuple(ScoreRow("passkey", "passkey", "acc", v, 1, n, None, 50) for n, v in passkey.items())
    res = Results(run_info("fixture", {}), ModelInfo("tiny", None, window), "hf", rows)
    folder.mkdir(parents=True, exist_ok=True)
    res.save(folder / "results.json")
    return folder


def test_lower_is_better_columns_bold_their_minimum():
    from longrecipe.reports.tables import to_markdown

    t = pd.DataFrame({"acc": [50.0, 60.0], "bits_per_byte": [1.25, 1.5]}, index=["a", "b"])
    md = to_markdown(t)
    assert "| a | 50.0 | **1.25** |" in md and "| b | **60.0** | 1.50 |" in md


def test_golden_markdown(runs, tmp_path):
    res = cli("report", *map(str, runs), "--out", str(tmp_path / "rep"), "--target", "2048")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "rep" / "table1.md").read_text() == GOLDEN_TABLE1
    by_len = (tmp_path / "rep" / "ruler_by_length.md").read_text().splitlines()
    assert by_len[0] == "| run | 256 | 512 | 1024 | 2048 | Avg | wAvg(inc) | wAvg(dec) | Effective |"
    # base: per-length means 85, 35, 5, 0 -> Avg 31.25; wAvg(inc) = (85 + 70 + 15 + 0) / 10 = 17.0
    # wAvg(dec) = (4*85 + 3*35 + 2*5 + 0) / 10 = 45.5; no length scores > 85.6, so no effective length
    # at 256 both runs score 85.0: a tie is not bolded
    assert by_len[2] == "| base | 85.0 | 35.0 | 5.0 | 0.0 | 31.2 | 17.0 | 45.5 | - |"
    # the NIAH variants alone (here multikey_1 and multivalue: the same per-length means), no summary columns
    niah = (tmp_path / "rep" / "ruler_niah_by_length.md").read_text().splitlines()
    assert niah[0] == "| run | 256 | 512 | 1024 | 2048 |" and niah[2] == "| base | 85.0 | 35.0 | 5.0 | 0.0 |"
    tex = (tmp_path / "rep" / "table1.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{76.2}" in tex and "longrecipe\\_cloze" in tex
    assert (tmp_path / "rep" / "table1.csv").read_text().startswith("run,NIAH(M),RULER,")


def test_every_plot_is_produced(runs, tmp_path):
    train_log = runs[1] / "train_log.jsonl"
    train_log.write_text("".join(json.dumps({"step": i, "loss": 3.0 / i}) + "\n" for i in range(1, 20)))
    assert cli("report", *map(str, runs), "--out", str(tmp_path / "rep")).returncode == 0
    for name in ("niah_base", "niah_longrecipe", "ruler_vs_length", "loss_curves", "table1_bars"):
        for ext in ("png", "svg"):
            p = tmp_path / "rep" / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 5_000, p


@pytest.mark.integration
def test_reports_never_import_torch():
    code = ("import sys, longrecipe.reports.report, longrecipe.reports.check, longrecipe.reports.plots; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.integration
def test_notebook_executes(runs):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    os.environ["LONGRECIPE_RUNS"] = ",".join(map(str, runs))
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        os.environ.pop("LONGRECIPE_RUNS")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = json.dumps(outputs)
    assert "NIAH(M)" in text and "image/png" in text and "error" not in {o.get("output_type") for o in outputs}


def test_longbench_tables(tmp_path):
    rows = [ScoreRow("longbench", "hotpotqa", "qa_f1", 40.0), ScoreRow("longbench", "Multi-Doc QA", "avg_en", 40.0),
            ScoreRow("longbench", "average", "avg_en", 35.0), ScoreRow("longbench", "average", "avg_zh", 20.0),
            ScoreRow("longbench", "Single-Doc QA", "avg_zh", 20.0)]
    rows += [ScoreRow("longbench_e", "hotpotqa", "qa_f1", v, 1, lo) for lo, v in ((0, 50.0), (4000, 30.0),
                                                                                  (8000, 10.0))]
    res = Results(run_info("fixture", {}), ModelInfo("m", None, 256), "hf", tuple(rows))
    (tmp_path / "lb").mkdir()
    res.save(tmp_path / "lb" / "results.json")
    assert cli("report", str(tmp_path / "lb"), "--out", str(tmp_path / "rep")).returncode == 0
    cat = (tmp_path / "rep" / "longbench_by_category.md").read_text().splitlines()
    assert cat[0] == "| run (language) | Avg | Single-Doc QA | Multi-Doc QA |"
    assert cat[2] == "| lb (en) | **35.0** | - | 40.0 |" and cat[3] == "| lb (zh) | 20.0 | 20.0 | - |"
    e = (tmp_path / "rep" / "longbench_e_by_bucket.md").read_text().splitlines()
    assert e[0] == "| run | 0-4k | 4-8k | 8k+ |" and e[2] == "| lb | 50.0 | 30.0 | 10.0 |"
    assert (tmp_path / "rep" / "table1.md").read_text().splitlines()[2] == "| lb | 35.0 |"


def test_exports_lm_eval_layout_and_ruler_summary(tmp_path):
    from longrecipe.reports.export import ruler_summaries, to_lm_eval

    rows = [{"suite": "ruler", "task": "niah_single_1", "metric": "string_match_all", "value": 90.0,
             "context_length": 4096, "depth": None, "n": 10, "n_null": 1, "task_version": 1},
            {"suite": "ruler", "task": "cwe", "metric": "string_match_all", "value": 40.5, "context_length": 4096,
             "depth": None, "n": 10, "n_null": 0, "task_version": 1},
            {"suite": "ruler", "task": "average", "metric": "mean_over_tasks", "value": 65.25,
             "context_length": 4096, "depth": None, "n": 2, "n_null": 0, "task_version": 1},
            {"suite": "niah", "task": "needle", "metric": "substring", "value": 100.0, "context_length": 2048,
             "depth": 0.0, "n": 1, "n_null": 0, "task_version": 1},
            {"suite": "niah", "task": "needle", "metric": "substring", "value": 50.0, "context_length": 2048,
             "depth": 100.0, "n": 1, "n_null": 0, "task_version": 1},
            {"suite": "general", "task": "longrecipe_heldout", "metric": "bits_per_byte", "value": 2.37,
             "context_length": None, "depth": None, "n": 40, "n_null": 0, "task_version": 1.0}]
    data = {"scores": rows, "model": {"path": "m"}, "backend": "hf", "run": {"id": "r"}}
    lm = to_lm_eval(data)
    assert lm["results"]["niah_single_1"] == {"alias": "niah_single_1", "4096,none": 0.9}
    assert lm["results"]["niah_needle"]["2048,none"] == 0.75  # averaged over depths, as a fraction
    assert lm["results"]["longrecipe_heldout"]["bits_per_byte,none"] == 2.37  # raw metrics stay as they are
    assert "average" not in lm["results"] and lm["n-samples"]["cwe"] == {"original": 10, "effective": 10}
    # RULER's evaluate.py: pd.DataFrame([[Tasks..], [Score..], [Nulls..]]).to_csv(index=False)
    assert ruler_summaries(data) == {4096: "0,1,2\nTasks,niah_single_1,cwe\nScore,90.0,40.5\nNulls,1/10,0/10\n"}


def test_seed_report_mean_std_and_the_difference_rule(tmp_path):
    """Three seeds: every cell is mean ± std (sample std), and a difference is one only past both 2x the pooled
    seed std and 2 binomial standard errors. By hand at 1024: flt 80/90/100 (90 ± 10), longrecipe 60/62/64
    (62 ± 2); 2x pooled std = 2 sqrt((100 + 4) / 2) = 14.4; 2 SE = 2 sqrt(62*38/150 + 90*10/150) = 9.3; the
    difference -28 passes both. At 512: 92 ± 2 vs 90 ± 2, difference -2: within noise."""
    flt = [(94, 80), (92, 90), (90, 100)]
    lr = [(92, 60), (90, 62), (88, 64)]
    dirs = []
    for k in range(3):
        d = tmp_path / "seeds" / f"seed-{k}"
        _seed_run(d / "flt", {512: flt[k][0], 1024: flt[k][1]}, 1024)
        _seed_run(d / "longrecipe", {512: lr[k][0], 1024: lr[k][1]}, 1024)
        dirs.append(str(d))
    out = tmp_path / "rep"
    res = cli("report", "--seeds", *dirs, "--out", str(out), "--target", "1024")
    assert res.returncode == 0, res.stderr
    table = (out / "passkey_by_length.md").read_text()
    assert "Mean ± std over 3 seeds." in table
    assert "| flt | **92.0 ± 2.0** | **90.0 ± 10.0** |" in table and "| longrecipe | 90.0 ± 2.0 | 62.0 ± 2.0 |" in table
    diff = (out / "differences.md").read_text()
    rows = {line.split(" | ")[2]: line for line in diff.splitlines() if line.startswith("| longrecipe")}
    assert rows["1024"] == "| longrecipe | passkey | 1024 | 62.0 | 90.0 | -28.0 | 14.4 | 9.30 | difference |"
    assert "| -2.0 | 4.0 |" in rows["512"] and rows["512"].endswith("within noise |")
    assert (out / "passkey_vs_length.png").stat().st_size > 5_000
    csv = (out / "passkey_by_length.csv").read_text().splitlines()
    assert csv[0] == "run,512,512 std,1024,1024 std"
    # one seed has no seed std: the rule calls nothing, not even noise (seed 0: 60 vs 80 at 1024)
    res = cli("report", "--seeds", dirs[0], "--out", str(tmp_path / "one"), "--target", "1024")
    one = (tmp_path / "one" / "differences.md").read_text()
    assert res.returncode == 0 and "| -20.0 | - | " in one and "within noise" not in one
    assert one.count("not judged (1 seed)") == 2
    # seeds that do not hold the same runs: one line, exit 2
    (tmp_path / "seeds" / "seed-2" / "flt" / "results.json").unlink()
    bad = cli("report", "--seeds", *dirs, "--out", str(tmp_path / "rep2"))
    assert bad.returncode == 2 and "different runs" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_committed_reports_follow_from_their_committed_results(tmp_path):
    """docs/ keeps each committed report's inputs beside it (here: the demo's per-seed results) so that
    it can be rebuilt and extended without re-running anything; a table that no longer follows from them (a hand
    edit, an aggregation changed without rebuilding the report) fails here."""
    from longrecipe.recipes.study import DEMO_RECORD
    from longrecipe.reports.record import study_record
    from longrecipe.reports.seeds import build_seed_report

    seeds = sorted((ROOT / "docs" / "demo-v1" / "seeds").glob("seed-*"))
    assert len(seeds) >= 2
    record = study_record(seeds, DEMO_RECORD)  # these seeds kept no study: compared as the demo compared them
    build_seed_report(seeds, tmp_path / "over-seeds", target=1024, ref=record.reference, suites=record.suites)
    committed = sorted((ROOT / "docs" / "demo-v1" / "over-seeds").glob("*.md"))
    assert len(committed) >= 5
    for f in committed:
        assert (tmp_path / "over-seeds" / f.name).read_text() == f.read_text(), f.name


def test_committed_v2_study_follows_from_its_kept_seeds(tmp_path):
    """docs/demo (the v2 study) is `longrecipe report --seeds docs/demo/seeds/seed-* --target 2048`: every table in
    it, the per-study ones (compute, Table 3, token ratio) included, must come back from the kept seeds alone, or
    a seed run on another day could not be added to it."""
    from longrecipe.recipes.study import DEMO_RECORD
    from longrecipe.reports.record import study_record
    from longrecipe.reports.seeds import build_seed_report
    from longrecipe.reports.study import write_kept_study

    seeds = sorted((ROOT / "docs" / "demo" / "seeds").glob("seed-*"))
    assert seeds and any((s / "study" / "study.json").is_file() for s in seeds)
    record = study_record(seeds, DEMO_RECORD)  # kept before study.json recorded it: the demo's
    build_seed_report(seeds, tmp_path, target=2048, ref=record.reference, suites=record.suites)
    write_kept_study(seeds, tmp_path, DEMO_RECORD)
    committed = sorted((ROOT / "docs" / "demo").glob("*.md"))
    assert {"compute.md", "table3.md"} <= {f.name for f in committed}
    for f in committed:
        assert (tmp_path / f.name).read_text() == f.read_text(), f.name


def test_committed_results_name_no_machine_path():
    """Committed results are read on other machines (seeds run on other days, resumed runs): an absolute path in
    them (an essay dir, an output folder) names one machine's layout and says nothing true elsewhere."""
    files = [f for f in (ROOT / "docs").rglob("*.json") if f.name in ("results.json", "eval_config.json")]
    assert len(files) >= 15

    def strings(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x

    bad = [(f.relative_to(ROOT), s) for f in files for s in strings(json.loads(f.read_text()))
           if s.startswith(("/", "~")) or (len(s) > 2 and s[1] == ":" and s[2] in "\\/")]
    assert not bad, bad[:5]


def test_loss_curves_are_smoothed_by_an_ema_with_the_raw_series_behind():
    """ema(): s_0 = x_0, s_t = a x_t + (1 - a) s_(t-1); by hand for a = 0.5 on a loss that swings 0 <-> 7."""
    from longrecipe.reports.plots import EMA_SPAN, ema

    assert ema([0.0, 7.0, 0.0, 7.0], 0.5) == [0.0, 3.5, 1.75, 4.375]
    assert ema([]) == [] and ema([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]
    assert ema([0.0, 11.0]) == pytest.approx([0.0, 11.0 * 2 / (EMA_SPAN + 1)])
