"""The task contract: a suite is one file + one registry line. A throw-away suite, registered here, runs through
`eval`, the report and the gate with no other change anywhere; the shipped suites all meet the contract."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

from longrecipe.base.schema import ScoreRow
from longrecipe.evaluate.config import build_config, option_keys
from longrecipe.evaluate.runner import run_eval
from longrecipe.recipes.cli import build_parser
from longrecipe.reports.check import run_check
from longrecipe.reports.report import build_report
from longrecipe.tasks.base import REGISTRY, Sample, TaskBase, option, register
from longrecipe.tasks.suites import SUITES


@dataclass(frozen=True)
class CopyOptions:
    digits: int = option(3, "digits of the number to copy", ge=1)

class Copy(TaskBase):
    """Copy a number that the prompt states twice: the smallest retrieval task (the tiny model solves some)."""

    name, version, Options = "copy_number", 1, CopyOptions

    def samples(self, tokenizer, length, n, seed, options, log=print):
        out = []
        for i in range(n):
            key = str(10 ** (options.digits - 1) + 37 * i + seed)
            out.append(Sample(i, f"The pass key is {key}. Remember it. {key} is the pass key. What is the pass key?",
                              [key], " The pass key is", 8, "copy", length))
        return out

    def score(self, predictions, samples):
        hits = [100.0 * (s.references[0] in p) for p, s in zip(predictions, samples)]
        return [ScoreRow(self.name, "copy", "exact_match", sum(hits) / len(hits), self.version,
                         samples[0].context_length, None, len(hits))]

@pytest.fixture
def copy_suite():
    register(Copy())
    yield REGISTRY["copy_number"]
    REGISTRY.pop("copy_number")


def test_a_new_suite_runs_through_eval_report_and_check(copy_suite, tmp_path, capsys):
    # its option is a config key and a CLI flag, validated like every other
    assert "copy_number_digits" in option_keys()
    args = build_parser().parse_args(["eval", "--model", "tiny", "--copy-number-digits", "4"])
    assert args.copy_number_digits == 4
    with pytest.raises(ValueError, match="copy_number_digits: 0 must be >= 1"):
        build_config({"model": "tiny", "out": "x", "copy_number_digits": 0})
    cfg = build_config({"model": "tiny", "out": str(tmp_path / "run"), "suites": ["copy_number", "passkey"],
                        "lengths": [128, 256], "samples": 4, "copy_number_digits": 4})
    results = run_eval(cfg, command="test")
    rows = [r for r in json.loads(results.read_text())["scores"] if r["suite"] == "copy_number"]
    assert [(r["task"], r["context_length"], r["n"]) for r in rows] == [("copy", 128, 4), ("copy", 256, 4)]
    preds = (tmp_path / "run" / "predictions" / "copy_number" / "copy" / "128.jsonl").read_text().splitlines()
    assert len(preds) == 4 and json.loads(preds[0])["outputs"] == ["1042"]  # 4 digits: 1000 + seed 42
    saved = json.loads((tmp_path / "run" / "eval_config.json").read_text())
    assert saved["copy_number_digits"] == 4 and saved["identity"]["settings"]["copy_number_digits"] == 4

    written = build_report([tmp_path / "run"], tmp_path / "report")
    table = (tmp_path / "report" / "table1.md").read_text()
    assert "copy_number" in table.splitlines()[0] and "passkey" in table.splitlines()[0]
    assert any(p.name == "table1.csv" for p in written)

    assert run_check(results, results) == 0  # the gate tracks the new suite's rows without naming it
    data = json.loads(results.read_text())
    for r in data["scores"]:
        if r["suite"] == "copy_number":
            r["value"] -= 50
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(data))
    capsys.readouterr()
    assert run_check(results, worse) == 1
    assert "copy_number" in capsys.readouterr().out


def test_every_shipped_suite_meets_the_contract():
    names = [t.name for t in SUITES]
    assert names == list(REGISTRY)[: len(names)] and len(set(names)) == len(names)
    keys = option_keys()
    for task in SUITES:
        assert dataclasses.is_dataclass(task.Options) and task.version
        assert (task.evaluator is None) == hasattr(task, "samples"), task.name  # generation xor model task
        for f in dataclasses.fields(task.Options):
            assert f.metadata.get("help") or f.metadata.get("key") in ("essay_dir", "chat_template"), (task.name, f)
    # the flags users know stay what they were
    for key in ("ruler_tasks", "qa_squad", "qa_hotpot", "niah_depths", "essay_dir", "ppl_file", "longbench_dir",
                "longbench_datasets", "longbench_max_length", "longbench_cot", "general_tasks", "general_max_length",
                "general_limit", "allow_code_execution", "chat_template"):
        assert key in keys, key
    with pytest.raises(ValueError, match="registered already"):
        register(type("Other", (TaskBase,), {"name": "ruler", "version": 1})())
