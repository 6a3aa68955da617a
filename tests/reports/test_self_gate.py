"""The project's own regression gates: the embedded model's pinned scores (evaluate/configs/self_gate.yaml against
tests/baselines/self_gate.json) and the v2 base's RULER and passkey scores (self_gate_v2.yaml against
self_gate_v2.json). A change in generation, prompting, scoring or the model that moves any score fails here with
the table of what moved; after an intended change, `make baseline` re-pins both."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, cli

GATES = {  # name -> (config, baseline, a (suite, length) row to move)
    "v1": ("self_gate.yaml", "self_gate.json", ("passkey", 256)),
    "v2": ("self_gate_v2.yaml", "self_gate_v2.json", ("ruler", 512)),
}


@pytest.mark.integration
@pytest.mark.parametrize("gate", sorted(GATES))
def test_own_scores_match_the_pinned_baseline(tmp_path, gate):
    config, baseline, probe = GATES[gate]
    CONFIG, BASELINE = ROOT / "evaluate" / "configs" / config, ROOT / "tests" / "baselines" / baseline
    out = tmp_path / "gate"
    res = cli("eval", "--config", str(CONFIG), f"out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli("check", str(out), "--baseline", str(BASELINE), "--per-task", "--any-change", "--tolerance", "0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "none moved by more than 0.0 points" in res.stdout

    # the gate sees a move either way: a baseline 5 points lower and one 5 points higher
    for delta in (-5.0, 5.0):
        data = json.loads(BASELINE.read_text())
        for r in data["scores"]:
            if (r["suite"], r["context_length"]) == probe:
                r["value"] += delta
        moved = tmp_path / f"moved{delta}.json"
        moved.write_text(json.dumps(data))
        res = cli("check", str(out), "--baseline", str(moved), "--per-task", "--any-change", "--tolerance", "0")
        assert res.returncode == 1 and probe[0] in res.stdout and f"{-delta:+.2f}" in res.stdout, res.stdout
    res = cli("check", str(out), "--baseline", str(tmp_path / "moved-5.0.json"), "--per-task", "--tolerance", "0")
    assert res.returncode == 0  # a run above its baseline: without --any-change a rise is not a regression
