"""Where models come from: the embedded tiny base model, or a local Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

EMBEDDED = Path(__file__).resolve().parent / "assets" / "tiny-base"
ALIASES = ("tiny", "tiny-base")


def resolve(path: str | Path) -> Path:
    """'tiny' -> the committed tiny base model; else a local directory that must hold config.json."""
    if str(path) in ALIASES:
        path = EMBEDDED
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: expected a Hugging Face directory with config.json "
                                f"(or 'tiny' for the embedded base model)")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"no safetensors weights in {path}: only safetensors checkpoints are loaded")
    return path
