"""The training recipe (train/recipe.py) through `longrecipe train`, in process: pinned 3-step losses of every method,
micro-batches, activation checkpointing and torch.compile keep the losses."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import SMALL, TRAIN_CONFIG, cli, train_log, weights

# Losses of the first 3 steps of each method on the committed tiny model (CPU, fp32, 1 thread). Re-pinned when
# every method began drawing its rows' windows from one shared stream (train/data.py).
PINNED = {
    "longrecipe": [2.821035, 2.692078, 2.559608],
    "pose": [2.413808, 1.960196, 2.066734],
    "randpos": [3.512869, 3.421786, 3.268274],
    "flt": [1.874835, 1.862062, 1.610849],
}


@pytest.mark.parametrize("method", list(PINNED))
def test_three_step_losses_are_pinned(trained, method):
    length = ["train.train_length=512"] if method == "flt" else []
    out = trained("train.steps=3", f"train.method={method}", *length)
    losses = [r["loss"] for r in train_log(out)]
    assert len(losses) == 3
    print(method, losses)
    assert losses == pytest.approx(PINNED[method], abs=2e-4)
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["max_position_embeddings"] == 512 and saved["rope_parameters"]["rope_theta"] > 10000
    assert (out / "config.yaml").read_text().count("method: " + method) == 1


def test_batch_size_is_sequences_per_step_whatever_the_micro_batch(tmp_path, trained):
    # train.batch_size = sequences per optimizer step; micro_batch_size only splits it into forwards (accumulation):
    # 4 rows in one forward and the same 4 rows in two forwards of 2 give the same step
    args = [*SMALL, "train.steps=3", "train.batch_size=4"]
    one, acc = trained(*args), tmp_path / "acc"
    res = cli("train", "--config", TRAIN_CONFIG, f"out={acc}", *args, "train.micro_batch_size=2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["loss"] for r in train_log(acc)] == pytest.approx([r["loss"] for r in train_log(one)], abs=1e-5)
    assert [r["tokens"] for r in train_log(acc)] == [r["tokens"] for r in train_log(one)]
    a, b = weights(one), weights(acc)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_selective_checkpointing_keeps_the_losses_and_logs_throughput(tmp_path):
    # checkpointing recomputes activations in backward: same maths, so the same losses as none (and as full)
    from longrecipe.base.config import load
    from longrecipe.train.config import RunConfig
    from longrecipe.train.recipe import apply_checkpointing, load_training_model

    args = [*SMALL, "train.steps=2"]
    runs = {}
    for mode in ("none", "selective", "full"):
        out = tmp_path / mode
        res = cli("train", "--config", TRAIN_CONFIG, f"out={out}", *args, f"train.checkpointing={mode}")
        assert res.returncode == 0, res.stderr[-2000:]
        runs[mode] = train_log(out)
    for mode in ("selective", "full"):
        assert [r["loss"] for r in runs[mode]] == pytest.approx([r["loss"] for r in runs["none"]], abs=1e-5)
    row = runs["selective"][-1]
    assert row["tokens_per_s"] > 0 and row["peak_mem_mb"] > 100 and "mfu" not in row  # MFU only on known GPUs
    cfg = load(RunConfig, TRAIN_CONFIG, [*args, "train.checkpointing=selective", "train.checkpoint_every=2"])
    model, _ = load_training_model(cfg, torch.device("cpu"))
    assert apply_checkpointing(model, cfg) == [True, False]  # the tiny model's 2 layers: every 2nd recomputed
    assert [layer.gradient_checkpointing for layer in model.model.layers] == [True, False]


@pytest.mark.integration
def test_compiled_training_matches_eager(tmp_path):
    # train.compile=true compiles each decoder layer and the loss chunk: same losses within float tolerance
    res = cli("train", "--config", TRAIN_CONFIG, f"out={tmp_path}", "train.steps=3", "train.compile=true", *SMALL)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["loss"] for r in train_log(tmp_path)] == pytest.approx(PINNED["longrecipe"], abs=1e-3)
