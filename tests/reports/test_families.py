"""The task families beyond RULER reach the reports and the gate through their views alone: one eval of the tiny
model on json_kv, HELMET Recall, GraphWalks and BABILong, then `report` (Table-1 columns, by-length tables and
plots) and `check` (their summary rows gated; a drop fails)."""

from __future__ import annotations

import json

from helpers import cli


def test_new_families_appear_in_tables_plots_and_the_gate(tmp_path):
    run = tmp_path / "run"
    res = cli("eval", "--model", "tiny", "--suite", "json_kv,helmet_recall,graphwalks,babilong", "--lengths", "1024",
              "--samples", "1", "--allow-extrapolation", "--json-kv-shots", "1", "--helmet-tasks", "ruler_niah_mk_2,"
              "ruler_niah_mv,ruler_niah_mk_3,json_kv", "--graphwalks-depth", "2", "--graphwalks-max-new-tokens", "8",
              "--babilong-tasks", "qa1,qa4", "--out", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    rep = cli("report", str(run), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr[-2000:]
    table1 = (tmp_path / "rep" / "table1.md").read_text()
    for column in ("json_kv", "HELMET Recall", "BABILong", "graphwalks"):
        assert column in table1, column
    for name in ("json_kv_by_length", "helmet_recall_by_length", "babilong_by_length", "babilong_tasks_by_length"):
        assert (tmp_path / "rep" / f"{name}.md").is_file(), name
    for name in ("json_kv_vs_length", "helmet_recall_vs_length", "babilong_vs_length"):
        assert (tmp_path / "rep" / f"{name}.png").is_file(), name
    base = tmp_path / "baseline.json"
    results = json.loads((run / "results.json").read_text())
    gate = cli("check", str(run), "--baseline", str(run / "results.json"), "--format", "json")
    assert gate.returncode == 0 and json.loads(gate.stdout)["tracked"] == 5  # json_kv, 2 graphwalks, 2 summaries
    for row in results["scores"]:  # a baseline 50 points above every score: the tracked rows fail, and only they
        row["value"] += 50
    base.write_text(json.dumps(results))
    fail = cli("check", str(run), "--baseline", str(base), "--format", "json")
    assert fail.returncode == 1
    failed = {(r["suite"], r["task"]) for r in json.loads(fail.stdout)["rows"]}
    assert failed == {("json_kv", "json_kv"), ("helmet_recall", "recall"), ("babilong", "average"),
                      ("graphwalks", "graphwalks_bfs"), ("graphwalks", "graphwalks_parents")}
