"""Where models come from: the embedded tiny base model, or a local Hugging Face directory."""

from __future__ import annotations

import json
import struct
from pathlib import Path

EMBEDDED = Path(__file__).resolve().parent / "assets" / "tiny-base"
ALIASES = ("tiny", "tiny-base")
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def resolve(path: str | Path) -> Path:
    """'tiny' -> the committed tiny base model; else a local directory holding config.json and safetensors weights
    the way transformers looks for them (model.safetensors, or an index and every shard it names), each file whole."""
    if str(path) in ALIASES:
        path = EMBEDDED
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: expected a Hugging Face directory with config.json "
                                f"(or 'tiny' for the embedded base model)")
    for f in weight_files(path):
        check_safetensors(f)
    return path


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
