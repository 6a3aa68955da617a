"""The regression gate `longrecipe check` (reports/check.py): its three exit codes, the tolerance, an empty run and
the table it prints."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli, one_line_exit_2, results_json, score_row


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_check_tolerance_empty_run_and_table(tmp_path):
    base = _write(tmp_path / "base.json", results_json([score_row(64.9), score_row(40.0, length=1024)]))
    run = _write(tmp_path / "run" / "results.json", results_json([score_row(63.9), score_row(39.0, length=1024)]))
    res = cli("check", str(run.parent), "--baseline", str(base), "--tolerance", "1.0")
    assert res.returncode == 0, res.stdout  # both dropped exactly 1.0 point
    worse = _write(tmp_path / "worse" / "results.json", results_json([score_row(63.8)]))
    res = cli("check", str(worse.parent), "--baseline", str(base))
    assert res.returncode == 1
    table = res.stdout.splitlines()
    assert any(" 512 " in x and "-1.10" in x for x in table) and any(" 1024 " in x and "missing" in x for x in table)
    assert "512.0" not in res.stdout and "nan" not in res.stdout
    empty = _write(tmp_path / "empty" / "results.json", results_json([]))
    res = cli("check", str(empty.parent), "--baseline", str(base))
    assert res.returncode == 1 and "2 of 2 tracked scores" in res.stdout
    one_line_exit_2(cli("check", str(run.parent), "--baseline", str(empty)), "no tracked scores")


def test_check_exit_codes(runs, tmp_path):
    base, new = runs[0] / "results.json", runs[1] / "results.json"
    ok = cli("check", str(runs[0]), "--baseline", str(base))
    assert ok.returncode == 0 and "none got worse" in ok.stdout
    drop = cli("check", str(runs[1]), "--baseline", str(base))
    assert drop.returncode == 1
    assert "longrecipe_cloze" in drop.stdout and "-2.00" in drop.stdout and "60.00" in drop.stdout
    assert cli("check", str(runs[1]), "--baseline", str(base), "--tolerance", "2.5").returncode == 0
    per_task = cli("check", str(runs[0]), "--baseline", str(new), "--per-task")
    assert per_task.returncode == 1 and "niah_multikey_1" in per_task.stdout
    bad = cli("check", str(tmp_path / "nowhere"), "--baseline", str(base))
    assert bad.returncode == 2 and "no results file" in bad.stderr
    (tmp_path / "broken.json").write_text("{")
    assert cli("check", str(runs[0]), "--baseline", str(tmp_path / "broken.json")).returncode == 2
    copy = tmp_path / "baseline.json"
    copy.write_text(base.read_text())
    assert cli("check", str(runs[1]), "--baseline", str(copy), "--update-baseline").returncode == 0
    assert json.loads(copy.read_text()) == json.loads(new.read_text())
    assert cli("check", str(runs[1]), "--baseline", str(copy)).returncode == 0


def test_check_ends_with_a_verdict_line_and_speaks_json(tmp_path):
    """The last stderr line says why the gate is red (or that it is green); `--format json` carries the same verdict
    and every failing row for CI systems that parse it."""
    base = _write(tmp_path / "base.json", results_json([score_row(64.9), score_row(40.0, length=1024),
                                                         score_row(50.0, length=2048)]))
    run = _write(tmp_path / "run" / "results.json", results_json([score_row(63.9), score_row(40.0, length=1024)]))
    worse = _write(tmp_path / "worse" / "results.json", results_json([score_row(60.0)]))
    ok = cli("check", str(base), "--baseline", str(base))
    assert ok.returncode == 0 and ok.stderr.strip().splitlines() == ["check: ok: 3 tracked rows within 1"]
    red = cli("check", str(run.parent), "--baseline", str(base), "--tolerance", "0.5")
    assert red.returncode == 1
    last = red.stderr.strip().splitlines()[-1]
    assert last == "check: FAIL: 1 tracked row missing, 1 dropped by more than 0.5 (of 3)"
    moved = cli("check", str(run.parent), "--baseline", str(base), "--any-change", "--tolerance", "0")
    assert moved.stderr.strip().splitlines()[-1] == "check: FAIL: 1 tracked row missing, 1 moved by more than 0 (of 3)"
    res = cli("check", str(worse.parent), "--baseline", str(base), "--format", "json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["tracked"], doc["failed"], doc["missing"]) == (False, 3, 3, 2)
    assert doc["verdict"] == res.stderr.strip().splitlines()[-1] == \
        "check: FAIL: 2 tracked rows missing, 1 dropped by more than 1 (of 3)"
    dropped = [r for r in doc["rows"] if not r["missing"]]
    assert dropped == [{"suite": "passkey", "task": "passkey", "context_length": 512, "depth": None,
                        "metric": "exact_match", "baseline": 64.9, "run": 60.0, "delta": -4.9, "missing": False}]
    assert sorted(r["context_length"] for r in doc["rows"] if r["missing"]) == [1024, 2048]
    green = json.loads(cli("check", str(base), "--baseline", str(base), "--format", "json").stdout)
    assert green["ok"] is True and green["rows"] == [] and green["verdict"] == "check: ok: 3 tracked rows within 1"


def test_runs_made_with_other_settings_are_named_by_report_and_refused_by_check(tmp_path):
    """The manifests differ in dtype and in one task's token budget: `report` warns one line per setting, `check`
    refuses in one line (exit 2) unless --allow-setting-change, then warns and gates; runs without a manifest (files
    from before it) are not compared."""
    def manifest(dtype: str, budget: int) -> dict:
        return {"backend": "hf", "dtype": dtype, "seed": 1,
                "generation": {"passkey/passkey": {"max_new_tokens": budget, "stop": []}, "ruler/vt": {
                    "max_new_tokens": 30, "stop": []}}}

    base = _write(tmp_path / "base" / "results.json", {**results_json([score_row(50.0)]),
                                                       "manifest": manifest("float32", 32)})
    run = _write(tmp_path / "run" / "results.json", {**results_json([score_row(50.0)]),
                                                     "manifest": {**manifest("bfloat16", 16),
                                                                  "generation": {"passkey/passkey": {
                                                                      "max_new_tokens": 16, "stop": []}}}})
    res = cli("check", str(run.parent), "--baseline", str(base))
    one_line_exit_2(res, "other settings: setting dtype differs: baseline=float32, run=bfloat16 (and 1 more)",
                    "--allow-setting-change")
    res = cli("check", str(run.parent), "--baseline", str(base), "--allow-setting-change")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines() == [
        "warning: setting dtype differs: baseline=float32, run=bfloat16",
        'warning: setting generation[passkey/passkey] differs: baseline={"max_new_tokens": 32, "stop": []}, '
        'run={"max_new_tokens": 16, "stop": []}',
        "check: ok: 1 tracked rows within 1"]  # ruler/vt is in one run only: nothing to compare
    rep = cli("report", str(base.parent), str(run.parent), "--out", str(tmp_path / "rep"))
    warned = [x for x in rep.stderr.splitlines() if x.startswith("warning:")]  # runs named by their folders
    assert rep.returncode == 0 and warned == [x.replace("baseline=", "base=") for x in res.stderr.splitlines()[:2]]
    old = _write(tmp_path / "old" / "results.json", results_json([score_row(50.0)]))  # no manifest
    assert cli("check", str(old.parent), "--baseline", str(base)).returncode == 0
