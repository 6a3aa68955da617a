"""`longrecipe eval` and the resumable runner (evaluate/runner.py): resume after a kill, rows of every suite, re-runs
into the same folder (union, other data, stale or corrupt predictions), model options, YAML configs, LongBench
end to end, and code in a model folder that must never run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, cli, lines, one_line_exit_2

from longrecipe.evaluate.backends import truncate_at_stop


def _lb_record(dataset: str, i: int, **extra) -> dict:
    base = {"input": f"Question {i}?", "context": "Some context words. " * (10 + 30 * i), "answers": [f"answer {i}"],
            "length": [100, 5000, 9000][i % 3], "dataset": dataset, "language": "en", "all_classes": None,
            "_id": f"{dataset}-{i}"}
    return {**base, **extra}

def _eval(out: Path, *extra: str):
    return cli("eval", "--model", "tiny", "--suite", "passkey", "--samples", "3", "--out", str(out), *extra)

def _rows(out: Path) -> set[tuple]:
    data = json.loads((out / "results.json").read_text())
    return {(r["suite"], r["task"], r["context_length"], r["metric"]) for r in data["scores"]}

def _longbench(folder: Path, answer: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"input": "Who?", "context": "Some context words. " * 20, "answers": [answer], "length": 100,
           "dataset": "hotpotqa", "language": "en", "all_classes": None, "_id": "x"}
    (folder / "hotpotqa.jsonl").write_text(json.dumps(rec) + "\n")
    return folder

def _remote_code_model(tmp_path: Path, tiny_dir: Path) -> tuple[Path, Path]:
    """The tiny model, its config and tokenizer pointing at custom code that would write a marker file."""
    model, marker = tmp_path / "remote", tmp_path / "marker"
    shutil.copytree(tiny_dir, model)
    (model / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
                                   "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as Evil\n"
                                   "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")
    for name, auto in (("config.json", {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.Evil"}),
                       ("tokenizer_config.json", {"AutoTokenizer": ["evil.EvilTokenizer", None]})):
        conf = json.loads((model / name).read_text())
        (model / name).write_text(json.dumps({**conf, "auto_map": auto}))
    return model, marker


@pytest.mark.integration
def test_resume_after_kill_recomputes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--model", "tiny", "--suite", "passkey", "--lengths", "512", "--samples", "80",
            "--batch-size", "1", "--allow-extrapolation", "--out", str(out)]
    preds = out / "predictions" / "passkey" / "passkey" / "512.jsonl"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "longrecipe"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and len(lines(preds)) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = lines(preds)
    assert 5 <= len(before) < 80 and not (out / "results.json").exists()
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    after = lines(preds)
    assert after[: len(before)] == before  # finished samples kept verbatim, none recomputed
    assert len(after) == 80 and sorted(json.loads(x)["index"] for x in after) == list(range(80))
    assert f"{80 - len(before)} samples in" in res.stdout  # only the missing ones were generated
    results = json.loads((out / "results.json").read_text())
    row = next(r for r in results["scores"] if r["task"] == "passkey")
    assert row["context_length"] == 512 and row["n"] == 80 and 0 <= row["value"] <= 100
    assert results["schema_version"] == 1 and results["model"]["max_position_embeddings"] == 256


def test_every_prediction_records_why_it_stopped_and_its_generated_tokens(tmp_path):
    """The hf backend reports each answer's finish reason ("stop": an end token or a stop string, "length":
    max_new_tokens) and generated-token count; the runner writes both into the prediction rows, and the settings
    that move a score into results.json's manifest."""
    from longrecipe.base import model_dirs
    from longrecipe.evaluate.backends import Request
    from longrecipe.evaluate.hf_backend import HFBackend

    backend = HFBackend(str(model_dirs.resolve("tiny")), device="cpu")
    ends = backend.generate([Request("The quick brown fox", 1), Request("The quick brown fox", 40, ("the",))])
    assert (ends[0].finish_reason, ends[0].tokens) == ("length", 1)
    assert ends[1].finish_reason == "stop" and 1 <= ends[1].tokens <= 40 and "the" not in ends[1]
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128", "--samples", "3",
              "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(x) for x in lines(tmp_path / "predictions" / "passkey" / "passkey" / "128.jsonl")]
    assert len(rows) == 3 and all(r["finish_reason"] in ("stop", "length") and 0 < r["generated_tokens"] <= 10
                                  for r in rows), rows
    # the run manifest: every setting that moves a score, as the engine ran it
    import transformers

    from longrecipe.evaluate.runner import tokenizer_sha256

    m = json.loads((tmp_path / "results.json").read_text())["manifest"]
    assert m == {"backend": "hf", "backend_version": f"transformers {transformers.__version__}",
                 "served_model": None, "dtype": "float32", "attn_implementation": "sdpa", "chat_template_sha256": None,
                 "tokenizer_sha256": tokenizer_sha256(backend.tokenizer),
                 "truncation": {"passkey": {"side": "none", "limit": None}},
                 "generation": {"passkey/passkey": {"max_new_tokens": 10, "stop": []}},
                 "sampling": {"temperature": 0.0, "top_p": 1.0, "greedy": True}, "seed": 42}


def test_niah_and_ruler_rows(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "niah,ruler", "--lengths", "512", "--samples", "2",
              "--niah-depths", "3", "--ruler-tasks", "niah_single_1,fwe", "--allow-extrapolation",
              "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    scores = json.loads((tmp_path / "results.json").read_text())["scores"]
    niah = [r for r in scores if r["suite"] == "niah"]
    assert sorted(r["depth"] for r in niah) == [0.0, 50.0, 100.0]
    tasks = {(r["task"], r["metric"]) for r in scores if r["suite"] == "ruler"}
    assert {("niah_single_1", "string_match_all"), ("fwe", "string_match_all"), ("average", "mean_over_tasks"),
            ("summary", "avg"), ("summary", "effective_length")} <= tasks
    assert all(r["context_length"] == 512 for r in scores if r["task"] in ("niah_single_1", "fwe"))
    assert (tmp_path / "eval_config.json").exists()
    # the run record names the absolute --out relative to where the command ran (committed results travel)
    config = json.loads((tmp_path / "results.json").read_text())["run"]["config"]
    assert config["out"] == os.path.relpath(tmp_path, ROOT) and config["model"] == "tiny"


def test_corrupt_predictions_keep_previous_results(tmp_path):
    args = ["eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "6", "--out",
            str(tmp_path)]
    assert cli(*args).returncode == 0
    results = (tmp_path / "results.json").read_text()
    preds = tmp_path / "predictions" / "passkey" / "passkey" / "256.jsonl"
    rows = lines(preds)
    preds.write_text("\n".join(rows[:2] + ['{"index": 2, "prediction": '] + rows[3:]) + "\n")
    res = cli(*args)
    assert res.returncode == 2 and "256.jsonl:3: malformed JSON line" in res.stderr
    assert (tmp_path / "results.json").read_text() == results
    other = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "7",
                "--out", str(tmp_path))
    assert other.returncode == 2 and "different run (samples differs)" in other.stderr


def test_stop_strings():
    assert truncate_at_stop(" 12345. Next", (".", "\n")) == " 12345"
    assert truncate_at_stop("abc", ()) == "abc"


def test_longbench_suites(tmp_path):
    data = tmp_path / "lb"
    data.mkdir()
    for name in ("hotpotqa", "passage_count"):
        rows = [_lb_record(name, i) for i in range(3)]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (data / f"{name}_e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trec = [_lb_record("trec", i, answers=["Number"], all_classes=["Number", "Location"]) for i in range(2)]
    (data / "trec.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trec))
    v2 = [{"_id": str(i), "domain": "d", "sub_domain": "s", "difficulty": ["easy", "hard"][i % 2],
           "length": ["short", "medium", "long"][i % 3], "question": "Which?", "choice_A": "a", "choice_B": "b",
           "choice_C": "c", "choice_D": "d", "answer": "B", "context": "text " * 50} for i in range(4)]
    (data / "longbench_v2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in v2))
    res = cli("eval", "--model", "tiny", "--suite", "longbench,longbench_e,longbench_v2", "--longbench-dir",
              str(data), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-3000:]
    scores = json.loads((tmp_path / "run" / "results.json").read_text())["scores"]
    v1 = {r["task"]: r for r in scores if r["suite"] == "longbench" and r["metric"] in ("qa_f1", "count",
                                                                                         "classification")}
    assert set(v1) == {"hotpotqa", "passage_count", "trec"} and all(r["n"] in (2, 3) for r in v1.values())
    cats = {(r["task"], r["metric"]) for r in scores if r["suite"] == "longbench" and r["metric"].startswith("avg")}
    assert ("Multi-Doc QA", "avg_en") in cats and ("average", "avg_en") in cats
    e = sorted((r["task"], r["context_length"], r["n"]) for r in scores if r["suite"] == "longbench_e")
    assert e == [("hotpotqa", 0, 1), ("hotpotqa", 4000, 1), ("hotpotqa", 8000, 1), ("passage_count", 0, 1),
                 ("passage_count", 4000, 1), ("passage_count", 8000, 1)]
    groups = {r["task"]: r for r in scores if r["suite"] == "longbench_v2"}
    assert set(groups) == {"Overall", "Easy", "Hard", "Short", "Medium", "Long"} and groups["Overall"]["n"] == 4
    # prompts were middle-truncated to the 256-token window minus the tokens to generate
    preds = (tmp_path / "run" / "predictions" / "longbench" / "hotpotqa" / "na.jsonl").read_text().splitlines()
    assert len(preds) == 3
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hotpotqa.jsonl").write_text('{"input": 1}\n')
    res = cli("eval", "--model", "tiny", "--suite", "longbench", "--longbench-dir", str(bad), "--out",
              str(tmp_path / "r2"))
    assert res.returncode == 2 and "hotpotqa.jsonl:1: missing field 'context'" in res.stderr


def test_model_options_reach_the_backend(tmp_path):
    out = tmp_path / "run"
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "4", "--dtype",
              "bfloat16", "--attn-implementation", "eager", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads((out / "eval_config.json").read_text())
    assert (saved["dtype"], saved["attn_implementation"]) == ("bfloat16", "eager")
    assert saved["identity"]["settings"]["dtype"] == "bfloat16"  # a dtype changes scores: part of the identity
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "4", "--out",
              str(out))
    assert res.returncode == 2 and "dtype differs" in res.stderr


def test_yaml_eval_config_with_overrides_and_flags(tmp_path):
    out = tmp_path / "run"
    cfg = str(ROOT / "evaluate" / "configs" / "smollm2_ruler.yaml")
    res = cli("eval", "--config", cfg, "model=tiny", "suites=passkey", "lengths=128,256", f"out={out}",
              "chat_template=false", "--samples", "3", "--seed", "5")  # the tiny tokenizer has no template
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads((out / "eval_config.json").read_text())
    assert (saved["model"], saved["suites"], saved["lengths"]) == ("tiny", ["passkey"], [128, 256])
    assert (saved["samples"], saved["seed"], saved["niah_depths"], saved["chat_template"]) == (3, 5, 11, False)
    res = cli("eval", "--config", cfg, "sampels=3", "model=tiny", f"out={tmp_path / 'o'}")
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and "unknown config key 'sampels'; did you mean 'samples'" in err[0]
    res = cli("eval", "--suite", "passkey")
    assert res.returncode == 2 and "eval needs model" in res.stderr


def test_every_shipped_eval_config_loads():
    from longrecipe.base import config as C
    from longrecipe.evaluate.config import build_config

    files = sorted((ROOT / "evaluate" / "configs").glob("*.yaml"))
    assert len(files) >= 2
    for f in files:
        assert f.read_text().splitlines()[0].startswith("# longrecipe eval --config evaluate/configs/" + f.name)
        C.check(build_config(C.read_yaml(f)))


def test_rerun_with_other_lengths_keeps_the_union(tmp_path):
    assert _eval(tmp_path, "--lengths", "128").returncode == 0
    first = _rows(tmp_path)
    res = _eval(tmp_path, "--lengths", "256", "--suite", "passkey,niah")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(tmp_path)
    assert first < rows and {("passkey", "passkey", 128, "exact_match"), ("passkey", "passkey", 256, "exact_match"),
                             ("niah", "needle", 256, "substring")} <= rows
    one_line_exit_2(_eval(tmp_path, "--lengths", "256", "--seed", "7"), "different run (seed differs)")
    assert _rows(tmp_path) == rows


def test_other_data_is_refused_and_bad_data_writes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--model", "tiny", "--suite", "longbench", "--longbench-datasets", "hotpotqa", "--out", str(out)]
    data = _longbench(tmp_path / "lb", "alice")
    assert cli(*args, "--longbench-dir", str(data)).returncode == 0
    saved, results = (out / "eval_config.json").read_text(), (out / "results.json").read_text()
    _longbench(data, "bob")  # the same folder with other answers: old predictions must not be scored against them
    one_line_exit_2(cli(*args, "--longbench-dir", str(data)), "the data in longbench_dir differs")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hotpotqa.jsonl").write_text('{"input": "x", "context": "y", "length": 3}\n')
    fresh = tmp_path / "fresh"
    one_line_exit_2(cli(*args[:-1], str(fresh), "--longbench-dir", str(broken)), "missing field 'answers'")
    assert not fresh.exists()
    assert (out / "eval_config.json").read_text() == saved and (out / "results.json").read_text() == results


def test_stale_predictions_are_refused(tmp_path):
    assert _eval(tmp_path, "--lengths", "256").returncode == 0
    preds = tmp_path / "predictions" / "passkey" / "passkey" / "256.jsonl"
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    rows[1]["outputs"] = ["00000"]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_exit_2(_eval(tmp_path, "--lengths", "256"), "sample 1 was predicted from another prompt")


@pytest.mark.integration
def test_remote_code_never_runs_and_nothing_asks(tmp_path, tiny_dir):
    model, marker = _remote_code_model(tmp_path, tiny_dir)
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "eval", "--model", str(model), "--suite",
           "passkey,ruler", "--ruler-tasks", "niah_single_1", "--lengths", "256", "--samples", "2", "--out",
           str(tmp_path / "run")]
    res = subprocess.run(cmd, cwd=ROOT, input="y\ny\ny\n", capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "TRUST_REMOTE_CODE": "1"})
    assert not marker.exists(), res.stderr[-2000:]
    assert "[y/N]" not in res.stdout + res.stderr and "custom code" not in res.stdout
    assert res.returncode in (0, 2), res.stderr[-2000:]  # loaded as plain Llama, or refused in one line


def test_a_folder_from_before_run_identities_resumes_on_its_recorded_keys(tmp_path):
    """An eval_config.json written before `identity` existed holds only the flat settings of its day (no think,
    dtype, tokenizer...): the keys it recorded are compared, the ones it lacks are not, and a recorded key that
    differs is named."""
    from longrecipe.base import model_dirs
    from longrecipe.evaluate.config import build_config
    from longrecipe.evaluate.runner import _check_same_run, run_identity

    out = tmp_path / "old"
    out.mkdir()
    cfg = build_config({"model": "tiny", "out": str(out), "suites": ["passkey"], "lengths": [128], "samples": 3})
    identity = run_identity(cfg, model_dirs.resolve("tiny"))
    old = {"model": "tiny", "backend": "hf", "samples": 3, "seed": 42, "essay_dir": None, "niah_depths": 11}
    (out / "eval_config.json").write_text(json.dumps(old))
    _check_same_run(out, cfg, identity)  # resumes: nothing it recorded differs
    (out / "eval_config.json").write_text(json.dumps({**old, "samples": 5}))
    with pytest.raises(ValueError, match="samples differs"):
        _check_same_run(out, cfg, identity)
