"""`longrecipe train --plan`: the memory estimate against real runs, its verdicts, and `train`'s refusal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, cli, cli_process

from longrecipe.train.config import RunConfig
from longrecipe.train.plan import GIB, SHAPES, estimate, parse_size, plan_for
from longrecipe.train.recipe import load_config

TINY = "train/configs/tiny_longrecipe.yaml"

BIG = "train/configs/llama3_8b_80k_longrecipe.yaml"


# sizes where the run's memory, not the interpreter's constant scratch (15-50 MB depending on the machine's
# packages), is what is measured
@pytest.mark.integration
@pytest.mark.parametrize("length,rows,ckpt", [(4096, 2, "none"), (8192, 1, "full"), (4096, 2, "selective")])
def test_estimate_is_within_25_percent_of_a_real_run(tmp_path, length, rows, ckpt):
    """A real 2-step `longrecipe train` of the tiny model in a process of its own: the log's train_mem_mb (peak
    resident set above the resident set before the model loaded) against the plan of the same config. glibc is
    told to return freed tensors (MALLOC_MMAP_THRESHOLD_, read when a process starts), so the resident set measures
    live memory, what the plan counts; in the test process the run's peak would sit on pytest's own heap."""
    overrides = [f"out={tmp_path / 'run'}", "train.method=flt", f"train.train_length={length}",
                 f"train.target_length={length}", f"train.batch_size={rows}", f"train.checkpointing={ckpt}",
                 "train.steps=2", "train.save_every=0", "train.threads=1"]
    est = plan_for(load_config(TINY, overrides)).total / 2**20
    res = cli_process("train", "--config", TINY, *overrides,
                      env={"MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    measured = max(r["train_mem_mb"] for r in log)
    assert abs(est / measured - 1) <= 0.25, (est, measured)


def test_checkpointing_and_sharding_move_the_estimate_the_right_way():
    shape = SHAPES["meta-llama-3-8b"]
    base = load_config(BIG)
    cfg = lambda **kw: load_config(BIG, [f"train.{k}={v}" for k, v in kw.items()])  # noqa: E731
    full = estimate(shape, base, 8, "cuda")
    none = estimate(shape, cfg(checkpointing="none"), 8, "cuda")
    sel = estimate(shape, cfg(checkpointing="selective"), 8, "cuda")
    assert full.parts["activations (saved)"] < sel.parts["activations (saved)"] < none.parts["activations (saved)"]
    # sharded states are 16 bytes per parameter over 8 GPUs: 8.03e9 params -> ~15 GiB per GPU
    states = sum(full.parts[k] for k in ("weights (fp32)", "gradients (fp32)", "AdamW state (fp32)"))
    assert abs(states / GIB - 16 * 8.03e9 / 8 / GIB) < 0.2
    assert full.micro == 1 and full.accum == 12 and full.tokens_per_step == 96 * 24576
    ddp = estimate(shape, cfg(distributed="ddp"), 8, "cuda")
    assert ddp.total > 8 * full.parts["weights (fp32)"] * 2  # replicated: 16 bytes per parameter on every GPU


def test_train_eval_counts_its_moment_between_steps_where_it_is_larger_than_the_step():
    """train.eval runs between steps, its gradients freed: fp32 weights and AdamW state stay, beside a KV cache of
    2 x layers x kv heads x head dim x 2 bytes (bf16) per token of the prompt and one layer's prefill activations
    ((4 h + 3 inter) x 2 bytes per token). Llama-3-8B on one GPU at its 81,920-token target, 16 prompts at once:
    (2 x 32 x 8 x 128 + 4 x 4096 + 3 x 14336) x 2 x 16 x 81920 bytes beside 12 x 8.03e9: past the step's peak."""
    shape, ddp = SHAPES["meta-llama-3-8b"], "train.distributed=ddp"  # FSDP2 refuses train.eval
    quiet = estimate(shape, load_config(BIG, [ddp, "train.eval.every=10"]), 1, "cuda")
    assert "train.eval excess" not in quiet.parts  # one prompt: inside the step's own peak
    big = estimate(shape, load_config(BIG, [ddp, "train.eval.every=10", "train.eval.options.batch_size=16"]), 1,
                   "cuda")
    step = estimate(shape, load_config(BIG, [ddp]), 1, "cuda")
    persistent = sum(step.parts[k] for k in ("weights (fp32)", "AdamW state (fp32)", "autocast weight copies"))
    moment = persistent + (2 * 32 * 8 * 128 + 4 * 4096 + 3 * 14336) * 2 * 16 * 81920
    assert big.parts["train.eval excess"] == pytest.approx(moment - step.total)
    assert big.total == pytest.approx(moment)


@pytest.mark.integration
def test_plan_command_prints_the_estimate_without_torch():
    code = (f"import sys; from longrecipe.recipes.cli import main; rc = main(['train', '--plan', {BIG!r}, '--gpus', "
            f"'8', '--gpu-mem', '80GiB']); print('torch' in sys.modules, rc)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "built-in shape of Meta-Llama-3-8B" in out and "tokens per step: 2,359,296" in out
    assert "fits:" in out and out.strip().endswith("False 0")


def test_plan_that_does_not_fit_exits_2():
    """Not a bad input: the plan is printed in full and the verdict is the exit code (a launcher can test it)."""
    res = cli("train", "--plan", BIG, "--gpus", "8", "--gpu-mem", "24GiB")
    assert res.returncode == 2 and "does NOT fit" in res.stdout


def test_parse_size():
    assert parse_size("80GiB") == 80 * 2**30 and parse_size("80GB") == 80e9 and parse_size("512MiB") == 2**29
    assert parse_size("141") == 141 * 2**30 and parse_size("1.5 TiB") == 1.5 * 2**40
    with pytest.raises(ValueError):
        parse_size("eighty")


def test_plan_reads_the_local_model_config():
    plan = plan_for(RunConfig())
    assert plan.shape_source.endswith("config.json") and plan.world == 1 and plan.device == "cpu"


@pytest.mark.integration
def test_peak_memory_is_the_runs_own_when_started_from_a_large_process(tmp_path):
    """getrusage's ru_maxrss keeps the parent's resident set across fork + exec; the log reads this process image's
    own peak (VmHWM), so a run started from a 600 MB parent still measures what the plan estimates."""
    out = tmp_path / "run"
    overrides = [f"out={out}", "train.method=flt", "train.train_length=8192", "train.target_length=8192",
                 "train.batch_size=1", "train.checkpointing=full", "train.steps=2", "train.save_every=0",
                 "train.threads=1"]
    code = ("import os, subprocess, sys\n"
            "ballast = bytearray(600 * 2**20)\n"
            "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
            f"subprocess.run([os.path.join(os.path.dirname(sys.executable), 'longrecipe'), 'train', '--config', "
            f"{TINY!r}, *{overrides!r}], check=True, capture_output=True, "
            "env={**os.environ, 'MALLOC_MMAP_THRESHOLD_': '65536', 'HF_HUB_OFFLINE': '1'})\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=1800)
    measured = max(json.loads(line)["train_mem_mb"] for line in (out / "train_log.jsonl").read_text().splitlines())
    est = plan_for(load_config(TINY, overrides)).total / 2**20
    assert abs(est / measured - 1) <= 0.25, (est, measured)
