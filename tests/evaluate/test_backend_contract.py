"""The backend contract: a backend is one file (a `BackendBase` subclass with its `Options`) + one `register_backend`
line. A throw-away backend, registered here, runs through `longrecipe eval` (its flag, its config key, the run
identity, resume) with no other change anywhere; the shipped backends all meet the contract."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import typing
from dataclasses import dataclass

import pytest
from helpers import cli

from longrecipe.base.config import option
from longrecipe.evaluate.backends import (
    BACKENDS,
    BackendBase,
    BackendSpec,
    Completion,
    backend_option_fields,
    register_backend,
)
from longrecipe.evaluate.config import NEUTRAL, backend_owners, build_config, flat

CALLS: list[int] = []  # requests each generate() call received


@dataclass(frozen=True)
class EchoOptions:
    echo_wrong_every: int = option(0, "answer every N-th request wrongly (0: never)", ge=0)
    echo_note: str = option("", "a note that moves no answer", neutral=True)


class EchoBackend(BackendBase):
    """Reads the pass key out of each prompt: a perfect model, except every `echo_wrong_every`-th answer."""

    name = "echo"
    Options = EchoOptions
    preferred_batch = 3

    def __init__(self, tokenizer, wrong_every: int):
        self.tokenizer, self.max_length, self.wrong_every = tokenizer, 10**6, wrong_every

    @classmethod
    def from_config(cls, cfg, model_dir):
        from longrecipe.base.tokenization import load_tokenizer
        from longrecipe.evaluate.config import backend_options

        return cls(load_tokenizer(model_dir), backend_options(cfg).echo_wrong_every)

    def generate(self, requests):
        CALLS.append(len(requests))
        out = []
        for r in requests:
            key = re.findall(r"pass key is (\d+)", r.prompt)[0]
            wrong = self.wrong_every and (int(key) % self.wrong_every == 0)
            out.append(Completion(f" {'0' if wrong else key}.", "stop", 2))
        return out


@pytest.fixture
def echo_backend():
    spec = register_backend(BackendSpec("echo", f"{__name__}:EchoBackend", "the test's echo"))
    yield spec
    BACKENDS.pop("echo")


def _score(run) -> float:
    rows = json.loads((run / "results.json").read_text())["scores"]
    return next(r["value"] for r in rows if r["suite"] == "passkey" and r["metric"] == "exact_match")


def test_a_new_backend_runs_through_eval(echo_backend, tmp_path):
    run = tmp_path / "run"
    base = ["eval", "--model", "tiny", "--backend", "echo", "--suite", "passkey", "--lengths", "128", "--samples",
            "8", "--out", str(run)]
    # its option is a flag and a config key, validated like every other, and the CLI lists the backend
    res = cli(*base, "--echo-wrong-every", "-1")
    assert res.returncode == 2 and "echo_wrong_every: -1 must be >= 0" in res.stderr
    assert cli(*base, "--echo-wrong-every", "1").returncode == 0  # every key is divisible by 1: all wrong
    assert _score(run) == 0
    saved = json.loads((run / "eval_config.json").read_text())
    assert saved["echo_wrong_every"] == 1 and saved["identity"]["settings"]["echo_wrong_every"] == 1
    assert "echo_note" not in saved["identity"]["settings"]  # neutral: not part of the run's identity
    res = cli(*base, "--echo-wrong-every", "0")  # another identity into the same --out: refused
    assert res.returncode == 2 and "echo_wrong_every differs" in res.stderr

    fresh = tmp_path / "fresh"
    cfg = build_config({"model": "tiny", "out": str(fresh), "backend": "echo", "suites": ["passkey"],
                        "lengths": [128], "samples": 8})
    assert flat(cfg)["echo_wrong_every"] == 0  # the declared default, applied once
    CALLS.clear()
    assert cli(*base[:-1], str(fresh), "--echo-note", "first").returncode == 0
    assert _score(fresh) == 100 and CALLS == [8]  # the run's --batch-size 8 beats preferred_batch 3
    preds = next((fresh / "predictions").rglob("*.jsonl"))
    lines = preds.read_text().splitlines()
    preds.write_text("\n".join(lines[:5]) + "\n")  # a killed run: 5 of 8 answers kept
    CALLS.clear()
    assert cli(*base[:-1], str(fresh), "--echo-note", "second", "--batch-size", "1").returncode == 0  # neutral
    assert CALLS == [3] and _score(fresh) == 100  # only the 3 missing samples asked for, in one preferred batch


def test_every_shipped_backend_meets_the_contract():
    assert list(BACKENDS) == ["hf", "vllm", "openai"]
    for name, spec in BACKENDS.items():
        cls = spec.cls
        assert issubclass(cls, BackendBase) and cls.name == name and dataclasses.is_dataclass(cls.Options)
        for key, f in backend_option_fields(cls):
            assert f.metadata.get("help"), (name, key)
    # a key several backends declare is one setting: the same type and default everywhere
    for key, (owner, f) in backend_owners().items():
        for spec in BACKENDS.values():
            theirs = dict(backend_option_fields(spec.cls)).get(key)
            if theirs is not None:
                hints = typing.get_type_hints(spec.cls.Options)
                assert theirs.default == f.default, key
                assert hints[theirs.name] == typing.get_type_hints(owner.Options)[f.name], key
    assert not BACKENDS["openai"].local_model and BACKENDS["openai"].cls.streams
    assert BACKENDS["hf"].local_model and not BACKENDS["hf"].cls.streams
    assert BACKENDS["vllm"].cls.preferred_batch > BACKENDS["hf"].cls.preferred_batch
    assert "out" in NEUTRAL and "samples" not in NEUTRAL  # read from the declarations
    # the flags users know stay what they were
    cfg = build_config({"model": "m", "out": "o"})
    for key in ("dtype", "attn_implementation", "device_map", "tensor_parallel_size", "gpu_memory_utilization",
                "max_model_len", "base_url", "tokenizer", "api_key_env", "concurrency", "request_timeout", "retries"):
        assert key in flat(cfg), key


def test_reading_the_backends_imports_no_engine():
    # every backend's options build the CLI's flags: their modules import torch, transformers or vLLM lazily
    code = ("import sys; from longrecipe.recipes.cli import build_parser; build_parser(); "
            "from longrecipe.evaluate.config import backend_owners; backend_owners(); "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
