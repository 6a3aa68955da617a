"""The embedded tiny models and the modelling module: v1 loads offline with the Auto classes and retrieves at its
window, v2 retrieves at 512, CPU generation batches long prompts alone (longrecipe.base.models, .modeling)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from longrecipe.base import models
from longrecipe.tasks import passkey


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


@pytest.mark.integration
def test_loads_offline_with_auto_classes(tiny_dir):
    code = (
        "import os, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_dir)!r});"
        f"t = AutoTokenizer.from_pretrained({str(tiny_dir)!r});"
        "ids = t('The pass key is 12345.')['input_ids']; print(len(t), m.config.max_position_embeddings,"
        " t.convert_ids_to_tokens(ids)[0], sum(p.numel() for p in m.parameters()))"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    vocab, window, first, params = out.stdout.split()
    assert int(vocab) == 2048 and int(window) == 256 and first == "<|bos|>" and int(params) < 2_000_000
    files = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    meta = json.loads((tiny_dir / "tiny_base.json").read_text())
    assert meta["config"]["native_length"] == 256


def test_tokenizer_splits_digits(tiny):
    _, tok = tiny
    pieces = tok.convert_ids_to_tokens(tok("key 90210")["input_ids"])
    assert pieces[-5:] == ["9", "0", "2", "1", "0"]


def test_passkey_at_native_length(tiny):
    from longrecipe.base.modeling import greedy_generate

    model, tok = tiny
    samples = passkey.generate(tok, 256, 20, seed=99)
    assert all(s["length"] + passkey.TOKENS_TO_GENERATE <= 256 for s in samples)
    assert all(s["length"] + passkey.TOKENS_TO_GENERATE >= 256 * 0.9 for s in samples)
    preds = greedy_generate(model, tok, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, batch_size=10)
    acc = np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)])
    assert acc >= 0.85, (acc, preds[:5])


def test_embedded_v2_loads_and_retrieves_at_512():
    """The embedded v2 (`tiny-v2`, #17 A; longrecipe/assets/tiny-v2): safetensors only, 8 layers, window
    512, and it does what RESULTS.md says (passkey 100, niah_single_1 100, niah_multikey_1 100 and niah_multivalue
    90 at 512 over 50 samples each; multivalue was 34 before the sixth attempt, multikey_1 30 before the eighth, a
    random pick among its 4 keys 25), and it has induction heads (the seventh attempt's repeated sequences formed
    them; a repeated random sequence is predicted, which the sixth's weights could not)."""
    from longrecipe.base.modeling import greedy_generate, load_model
    from longrecipe.recipes.tinybase import induction_accuracy, ruler_accuracy

    kept = models.resolve("tiny-v2")
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in kept.iterdir())
    model, tok = load_model(kept)
    assert model.config.num_hidden_layers == 8 and model.config.max_position_embeddings == 512
    samples = passkey.generate(tok, 512, 20, seed=99)
    preds = greedy_generate(model, tok, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, batch_size=10)
    assert np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)]) >= 0.9, preds[:5]
    tasks = ("niah_single_1", "niah_multikey_1", "niah_multivalue")
    scores = ruler_accuracy(model, tok, 512, 10, None, seed=7, tasks=tasks)
    assert scores["niah_single_1"] >= 80 and scores["niah_multivalue"] >= 60, scores
    assert scores["niah_multikey_1"] >= 70, scores  # the seventh's weights: 10 here (30 over 50)
    assert induction_accuracy(model, tok, 40, rows=4) >= 0.5  # the sixth's weights: 0.00
