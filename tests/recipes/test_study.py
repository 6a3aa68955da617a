"""The study tables (reports/study.py, with the demo's record from longrecipe/recipes/study.py): compute, Table 3 and
the token-ratio table by hand, kept per seed and rebuilt over seeds; the study's record (reports/record.py); a
method's training config through its `Method` entry."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import cli


def _results(folder: Path, rows: list[tuple]) -> Path:
    from longrecipe.base.schema import ModelInfo, Results, ScoreRow, run_info

    res = Results(run_info("fixture", {}), ModelInfo("tiny", None, 2048), "hf",
                  tuple(ScoreRow(*r) for r in rows))
    folder.mkdir(parents=True)
    res.save(folder / "results.json")
    return folder


def test_compute_table_by_hand():
    from longrecipe.reports.record import StudyRecord
    from longrecipe.reports.study import compute_table

    compute = {"flt": {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 100.0, "wall_s": 10.0},
               "pose": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0, "wall_s": 3.0},
               "longrecipe-30pct/extension": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0,
                                              "wall_s": 3.0},
               "longrecipe-30pct/replay": {"sequences": 4, "seq_len": 256, "tokens": 1024, "flops": 4.0,
                                           "wall_s": 1.0},
               "analysis": {"flops": 1.0, "wall_s": 0.5}}
    t = compute_table(compute, 0.3, StudyRecord(("flt", "pose", "randpos"), "flt", ()))
    assert list(t.index) == ["flt", "pose", "longrecipe"]
    assert t.loc["longrecipe", "FLOPs"] == 30.0 and t.loc["longrecipe", "wall s"] == 4.5
    assert t.loc["longrecipe", "train tokens"] == 5936 and t.loc["longrecipe", "FLOPs vs FLT"] == 0.3
    assert t.loc["pose", "FLOPs vs FLT"] == 0.25 and t.loc["longrecipe", "samples"] == 8


def test_table3_and_token_ratio_tables(tmp_path):
    from longrecipe.reports.study import table3, token_ratio_table

    def general(cloze):
        return [("general", "longrecipe_cloze", "acc", cloze, 1, None, None, 60),
                ("general", "longrecipe_heldout", "bits_per_byte", 2.0 - cloze / 100, 1, None, None, 40)]

    base = _results(tmp_path / "base", general(70.0))
    ext = _results(tmp_path / "longrecipe-extension", general(40.0))
    rep = _results(tmp_path / "longrecipe-replay", general(55.0))

    def ruler(values):
        rows = [("ruler", "average", "mean_over_tasks", v, 1, n, None, 11) for n, v in zip((256, 512, 1024), values)]
        return rows + [("passkey", "passkey", "exact_match", values[0], 1, 256, None, 20)]

    merged = _results(tmp_path / "longrecipe", general(65.0) + ruler((50.0, 30.0)))
    t3 = table3(base, [ext, rep, merged])
    assert list(t3.index) == ["original", "before replay", "after replay", "after merge"]
    assert list(t3["longrecipe_cloze (acc)"]) == [70.0, 40.0, 55.0, 65.0]
    r10 = _results(tmp_path / "longrecipe-10pct", ruler((20.0, 10.0)))
    flt = _results(tmp_path / "flt", ruler((60.0, 40.0, 5.0)))  # FLT also beyond the ratio runs' lengths
    tr = token_ratio_table([(0.3, merged), (0.1, r10)], flt)
    assert list(tr.index) == ["LongRecipe 10%", "LongRecipe 30%", "FLT 100%"]
    assert list(tr[512]) == [10.0, 30.0, 40.0] and list(tr["passkey@256"]) == [20.0, 50.0, 60.0]
    # only the lengths every row has, and the mean over them (FLT's 1024 would bias its average)
    assert 1024 not in tr.columns and list(tr["Avg"]) == [15.0, 40.0, 50.0]


def test_kept_study_rebuilds_the_per_study_tables(tmp_path):
    """A seed keeps the inputs of Table 3, the token-ratio and compute tables (demo.keep_study), so that seeds run
    on other days are joined by `longrecipe report --seeds` with those tables too (from the seed that ran the
    fullest study), identical to the study's own."""
    from longrecipe.recipes.demo import keep_seed, keep_study
    from longrecipe.recipes.study import DEMO_RECORD
    from longrecipe.reports.study import write_study_tables

    def rows(cloze, ruler):
        return [("general", "longrecipe_cloze", "acc", cloze, 1, None, None, 60),
                ("passkey", "passkey", "exact_match", ruler, 1, 512, None, 20),
                *[("ruler", "average", "mean_over_tasks", ruler - k, 1, n, None, 9)
                  for k, n in enumerate((512, 1024))]]

    ev = tmp_path / "eval"
    runs = [_results(ev / name, rows(c, r)) for name, c, r in (("base", 70.0, 90.0), ("flt", 60.0, 80.0),
                                                                 ("longrecipe", 65.0, 70.0))]
    stages = [_results(ev / "longrecipe-extension", rows(40.0, 60.0)), runs[-1]]
    ratios = [(0.1, _results(ev / "longrecipe-10pct", rows(50.0, 30.0))), (0.3, runs[-1])]
    compute = {"flt": {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 100.0, "wall_s": 10.0},
               "longrecipe-30pct/extension": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0,
                                              "wall_s": 3.0}}
    direct = write_study_tables(compute, 0.3, runs, stages, ratios, tmp_path / "direct", DEMO_RECORD)
    plain, seed = tmp_path / "seeds" / "seed-0", tmp_path / "seeds" / "seed-1"  # the extras ran with seed 1 only
    keep_seed(runs, plain)
    keep_study(plain, compute, 0.3, runs, [], [])
    keep_seed(runs, seed)
    keep_study(seed, compute, 0.3, runs, stages, ratios)
    assert sorted(p.name for p in (seed / "study").iterdir()) == ["longrecipe-10pct", "longrecipe-extension",
                                                                 "study.json"]
    res = cli("report", "--seeds", str(plain), str(seed), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    for f in direct:
        assert (tmp_path / "rep" / f.name).read_text() == f.read_text(), f.name
    assert "| LongRecipe 10% |" in (tmp_path / "rep" / "token_ratio.md").read_text()
    # a kept study naming a run that is not there: one line, exit 2
    (seed / "study" / "study.json").write_text(json.dumps({"compute": {}, "ratio": 0.3, "stage_runs": ["gone"],
                                                           "ratio_runs": []}))
    bad = cli("report", "--seeds", str(plain), str(seed), "--out", str(tmp_path / "rep2"))
    assert bad.returncode == 2 and "not a kept study" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_table3_over_seeds_is_mean_and_std_of_every_staged_seed(tmp_path):
    """Two seeds that both ran the Table-3 stages: Table 3 of the report over seeds is their mean ± std cell by
    cell (sample std, ddof 1), not the first seed's table; a seed without the stages does not count."""
    from longrecipe.recipes.demo import keep_seed, keep_study

    def cloze(v):
        return [("general", "longrecipe_cloze", "acc", v, 1, None, None, 60)]

    folders = []
    for seed, (orig, ext, merged) in enumerate([(70.0, 40.0, 60.0), (80.0, 50.0, 60.0), (0.0, 0.0, 0.0)]):
        ev = tmp_path / f"eval-{seed}"
        runs = [_results(ev / "base", cloze(orig)), _results(ev / "longrecipe", cloze(merged))]
        stages = [_results(ev / "longrecipe-extension", cloze(ext)), runs[-1]] if seed < 2 else []
        folder = tmp_path / "seeds" / f"seed-{seed}"
        keep_seed(runs, folder)
        keep_study(folder, {}, 0.3, runs, stages, [])
        folders.append(str(folder))
    res = cli("report", "--seeds", *folders, "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "table3.md").read_text()
    # original: 70, 80 -> 75 ± 7.07; before replay: 40, 50 -> 45 ± 7.07; after merge: 60, 60 -> 60 ± 0
    assert md.startswith("Mean ± std over 2 seeds.")
    assert "| original | **75.0 ± 7.07** |" in md and "| before replay | 45.0 ± 7.07 |" in md
    assert "| after merge | 60.0 ± 0.0 |" in md
    csv = pd.read_csv(tmp_path / "rep" / "table3.csv", index_col=0)
    assert csv.loc["before replay", "longrecipe_cloze (acc) std"] == pytest.approx(50**0.5)


def test_the_compute_table_follows_the_recorded_methods_and_reference():
    """Which rows are baselines and what the FLOPs are relative to is the study's record, not a default."""
    from longrecipe.reports.record import StudyRecord
    from longrecipe.reports.study import compute_table

    compute = {"flt": {"flops": 100.0}, "pose": {"flops": 25.0}, "longrecipe-30pct/extension": {"flops": 50.0}}
    t = compute_table(compute, 0.3, StudyRecord(("pose",), "pose", ()))
    assert list(t.index) == ["pose", "longrecipe"] and list(t["FLOPs vs POSE"]) == [1.0, 2.0]
    assert "FLOPs vs FLT" not in compute_table(compute, 0.3, StudyRecord(("flt", "pose"), None, ())).columns


def test_the_seed_report_compares_as_the_study_recorded(tmp_path):
    """study.json's record (methods, reference, suites) drives the differences table; a study that recorded none
    gets the caller's fallback (the CLI: the demo's record), else what its runs show (the full-length baseline as
    the reference); --reference still overrides the recorded one."""
    from longrecipe.recipes.study import DEMO_RECORD
    from longrecipe.reports.record import StudyRecord, study_record

    def rows(v):
        return [("passkey", "passkey", "exact_match", v, 1, 512, None, 20),
                ("niah", "needle", "substring", v, 1, 512, None, 20),
                ("ppl", "ppl", "perplexity", v, 1, 512, None, 20)]

    folder = tmp_path / "seeds" / "seed-0"
    for name, v in (("base", 10.0), ("flt", 90.0), ("pose", 50.0)):
        _results(folder / name, rows(v))
    assert study_record([folder]) == StudyRecord(("flt", "pose"), "flt", ("niah", "passkey"))
    assert study_record([folder], DEMO_RECORD) == DEMO_RECORD
    (folder / "study").mkdir()
    (folder / "study" / "study.json").write_text(json.dumps(
        {"compute": {}, "ratio": 0.3, "stage_runs": [], "ratio_runs": [], "methods": ["pose"], "reference": "pose",
         "suites": ["passkey"]}))
    assert study_record([folder], DEMO_RECORD) == StudyRecord(("pose",), "pose", ("passkey",))
    res = cli("report", "--seeds", str(folder), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    diff = (tmp_path / "rep" / "differences.md").read_text()
    assert diff.startswith("Differences against pose,") and "| niah |" not in diff and "| flt | passkey |" in diff
    res = cli("report", "--seeds", str(folder), "--out", str(tmp_path / "rep2"), "--reference", "base")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "rep2" / "differences.md").read_text().startswith("Differences against base,")


def test_a_method_finds_its_training_config_through_its_entry(tmp_path, monkeypatch):
    """Every Method names its tiny training config (tiny_<name>.yaml unless it says otherwise) and the demo trains
    with that one; a method whose config is not there stops the demo at its start, in one line, before any
    training; the ratio runs' name has one builder."""
    import longrecipe.train
    from longrecipe.recipes import demo
    from longrecipe.reports.record import ratio_label
    from longrecipe.train.positions import METHODS, Method

    configs = Path(longrecipe.train.__file__).parent / "configs"
    assert METHODS["flt"].tiny_config == "tiny_flt.yaml"
    assert Method("x", "", tiny_config="a.yaml").tiny_config == "a.yaml"
    assert all((configs / m.tiny_config).is_file() for m in METHODS.values())
    assert demo.ratio_label is ratio_label and ratio_label(0.3) == "longrecipe-30pct"
    monkeypatch.setitem(METHODS, "nope", Method("nope", "a baseline nobody wrote a config for"))
    d = demo.Demo(demo.DemoConfig.quick_config(out=str(tmp_path / "demo")))
    with pytest.raises(ValueError, match="method 'nope': no training config .*tiny_nope.yaml") as err:
        d.run()
    assert "\n" not in str(err.value) and not (tmp_path / "demo" / "train").exists()
