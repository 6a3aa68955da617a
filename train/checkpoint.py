"""Training checkpoints: atomic folders with a manifest written last; sharded (torch.distributed.checkpoint) under
FSDP2, one safetensors file otherwise; read back without running pickled code.

Layout of `out/checkpoints/step-N/`: state.pt (scheduler, RNG, step, optimizer hyperparameters; tensors and plain
containers only), the weights and optimizer state, and manifest.json (size and SHA-256 of every file), written
last. Two formats:
- single process / DDP: model.safetensors + the optimizer inside state.pt;
- FSDP2: each process writes its own shard of the weights and AdamW state (`__R_0.distcp`) and the coordinator
  writes `.metadata` (DCP). Nothing is gathered onto one process (an 8B model's fp32 weights + AdamW state are
  128 GB), and a checkpoint resumes at any world size, 1 process included: DCP reshards on load.
A save goes to a hidden `.partial-step-N` folder renamed to `step-N` only once every file and the manifest are
written, so a kill -9 mid-save leaves nothing that looks like a checkpoint; a resume verifies the manifest.

Why a restricted reader: DCP's own reader unpickles `.metadata` with `pickle.load` and non-tensor entries with
`torch.load(weights_only=False)`; a checkpoint folder is something a user can be handed. Ours unpickles only
DCP's metadata classes, dtypes and sizes (anything else is refused, never run), and our saves hold tensors only.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import safetensors.torch as st
import torch

from longrecipe.base.io import atomic_dir, file_sha256, write_text

KEEP_CHECKPOINTS = 2  # the newest complete one, and the one before it as a fallback
MANIFEST = "manifest.json"
DCP_METADATA = ".metadata"


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _write_manifest(folder: Path, step: int) -> None:
    write_text(folder / MANIFEST, json.dumps({"step": step, "files": {
        f.name: _file_entry(f) for f in sorted(folder.iterdir()) if f.is_file() and f.name != MANIFEST}},
        indent=1) + "\n")


def save_checkpoint(out: Path, step: int, model, opt, sched, dist, net=None) -> None:
    """Atomic checkpoint folder with a manifest written last; older ones are removed only after the new one is
    complete, keeping KEEP_CHECKPOINTS. Every process calls it; under FSDP2 (`net` given) each writes its shard."""
    if net is not None:
        _save_sharded(out, step, net, opt, sched, dist)
        return
    if dist.main:
        _write_plain(out / "checkpoints", step, *_plain_snapshot(model, opt, sched, step, copy=False))
    dist.barrier()


def _cpu_copy(obj: Any) -> Any:
    """A copy of a state (nested dicts/lists of tensors and plain values) whose tensors live in fresh CPU memory,
    so that training can go on changing the originals while the copy is written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _plain_snapshot(model, opt, sched, step: int, copy: bool) -> tuple[dict, dict]:
    """(weights, state) of a single-process/DDP checkpoint. A tensor shared by several names (the tied head) is
    kept once, under its first name (`_tied_names`); `copy`: CPU copies (an asynchronous save)."""
    tied = _tied_names(model)
    weights = {k: t.detach().contiguous() for k, t in model.state_dict().items() if k not in tied}
    state = {"scheduler": sched.state_dict(), "rng": _rng_state(), "step": step, "optimizer": opt.state_dict()}
    return (_cpu_copy(weights), _cpu_copy(state)) if copy else (weights, state)


def _write_plain(ckpts: Path, step: int, weights: dict, state: dict) -> None:
    with atomic_dir(ckpts / f"step-{step:08d}") as tmp:
        st.save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        _write_manifest(tmp, step)
    _prune(ckpts)


def _sharded_state(net, opt, sched, step: int, world: int) -> tuple[dict, dict]:
    """(what DCP writes: this process's shards of weights and AdamW state, what the main process writes to
    state.pt: scheduler, RNG, step, world size, optimizer hyperparameters)."""
    from torch.distributed.checkpoint import state_dict as sd  # local: FSDP2 runs only

    osd = sd.get_optimizer_state_dict(net, opt)
    return ({"model": sd.get_model_state_dict(net), "optim": {"state": osd["state"]}},
            {"scheduler": sched.state_dict(), "rng": _rng_state(), "step": step, "world": world,
             "param_groups": osd["param_groups"]})


def _fresh_partial(ckpts: Path, step: int, dist) -> tuple[Path, Path]:
    final, tmp = ckpts / f"step-{step:08d}", ckpts / f".partial-step-{step:08d}"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
        tmp.mkdir(parents=True)
    dist.barrier()
    return final, tmp


def _finish_sharded(ckpts: Path, final: Path, tmp: Path, state: dict) -> None:
    """Main process, once every shard and DCP's .metadata are on disk: our state, the manifest, then the rename
    that makes the folder a checkpoint."""
    torch.save(state, tmp / "state.pt")
    _write_manifest(tmp, state["step"])
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(ckpts)


def _save_sharded(out: Path, step: int, net, opt, sched, dist) -> None:
    from torch.distributed.checkpoint import FileSystemWriter, save  # local: FSDP2 runs only

    ckpts = out / "checkpoints"
    final, tmp = _fresh_partial(ckpts, step, dist)
    shards, ours = _sharded_state(net, opt, sched, step, dist.world)
    save(shards, storage_writer=FileSystemWriter(str(tmp)))  # every process its shard; the coordinator .metadata last
    if dist.main:
        _finish_sharded(ckpts, final, tmp, ours)
    dist.barrier()


class Checkpointer:
    """Saves the run's checkpoints, in the foreground or (`train.async_save`) in the background.

    Why background saves: a save of an 8B run writes ~128 GB of weights and AdamW state; written in the
    foreground, every GPU waits for the disk. In the background the step pays only for a copy of the state into
    host memory (the snapshot is taken before `save` returns, so later steps cannot leak into it), and the files
    are written while training goes on. The folder becomes a checkpoint exactly as in a foreground save (manifest
    last, then one rename), so a kill -9 at any moment leaves either the previous checkpoints or the new one.
    One save is in flight at a time: a save, and the end of the run, first wait for the one before; an error of a
    background save is raised there. Costs: one extra copy of the state in host memory while it is written."""

    def __init__(self, out: Path, dist, asynchronous: bool = False) -> None:
        self.ckpts, self.dist, self.asynchronous = out / "checkpoints", dist, asynchronous
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._group = None  # a process group of its own for DCP's collectives in the background thread
        if dist.main and self.ckpts.is_dir():  # what killed saves left (the run folder is ours: base/runlock.py)
            for stale in self.ckpts.glob(".*step-*"):
                shutil.rmtree(stale, ignore_errors=True)

    def save(self, step: int, model, opt, sched, net=None) -> None:
        self.wait()
        if not self.asynchronous:
            save_checkpoint(self.ckpts.parent, step, model, opt, sched, self.dist, net)
        elif net is not None:
            self._start_sharded(step, net, opt, sched)
        elif self.dist.main:
            weights, state = _plain_snapshot(model, opt, sched, step, copy=True)
            self._start(_write_plain, self.ckpts, step, weights, state)

    def _start_sharded(self, step: int, net, opt, sched) -> None:
        from torch.distributed.checkpoint import FileSystemWriter, async_save  # local: FSDP2 runs only

        if self._group is None:
            self._group = torch.distributed.new_group(backend="gloo")
        final, tmp = _fresh_partial(self.ckpts, step, self.dist)
        shards, ours = _sharded_state(net, opt, sched, step, self.dist.world)
        upload = async_save(shards, storage_writer=FileSystemWriter(str(tmp)), process_group=self._group)

        def finish() -> None:
            upload.result()  # on every process: its shard written (on the coordinator: all shards and .metadata)
            if self.dist.main:
                _finish_sharded(self.ckpts, final, tmp, ours)

        self._start(finish)

    def _start(self, fn, *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as err:  # noqa: BLE001  (raised again in the training thread by wait())
                self._error = err

        self._thread = threading.Thread(target=run, name="checkpoint-save", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the save in flight is on disk; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"a background checkpoint save failed: {err}") from err


def _prune(ckpts: Path) -> None:
    for old in sorted(ckpts.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None when its manifest matches every file)."""
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict) or "state.pt" not in files or not (
                "model.safetensors" in files or DCP_METADATA in files):
            return "its manifest lists no model or state"
    except FileNotFoundError:
        return "it has no manifest (an interrupted save, or written by an older version)"
    except (ValueError, KeyError, TypeError):
        return "its manifest is unreadable"
    for name, entry in files.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry.get("bytes") or _file_entry(path)["sha256"] != entry.get("sha256"):
            return f"{name} does not match its manifest (torn or modified)"
    return None


def _tied_names(model) -> set[str]:
    """Names of parameters that are another parameter under a second name (the tied head), all but the first."""
    seen: set[int] = set()
    tied: set[str] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        seen.add(id(p))
    return tied


def full_states(model, net, opt) -> tuple[dict, dict]:
    """FSDP2: the whole model's and optimizer's states on the main process's CPU (a collective: all call it).
    Tied parameters (the head that is the embedding) appear once, as in a Hugging Face checkpoint."""
    from torch.distributed.checkpoint import state_dict as sd  # local: FSDP2 runs only (several processes)

    options = sd.StateDictOptions(full_state_dict=True, cpu_offload=True)
    tied = _tied_names(model)
    weights = {k: v for k, v in sd.get_model_state_dict(model, options=options).items() if k not in tied}
    return weights, sd.get_optimizer_state_dict(net, opt, options=options)


def latest_checkpoint(out: Path, log=None) -> Path | None:
    """The newest complete checkpoint, skipping (and saying so) any whose files do not match their manifest;
    None when there are none; a ValueError when there are some but none is usable."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    found = sorted((out / "checkpoints").glob("step-*"), reverse=True)
    for ckpt in found:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            if ckpt != found[0]:
                log(f"note: resuming from {ckpt.name}, the newest complete checkpoint")
            return ckpt
        log(f"note: checkpoint {ckpt} is not usable: {problem}")
    if found:
        raise ValueError(f"no usable checkpoint in {out / 'checkpoints'} (see the notes above); remove that folder "
                         f"to restart the run from step 0")
    return None


def load_plain(path: Path) -> Any:
    """torch.load that never runs pickled code: tensors, numbers, strings and containers only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says what matters
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: refused to load: it holds objects other than tensors and plain containers (a "
                         f"crafted or foreign file; nothing in it was run)") from None
    except (RuntimeError, EOFError, OSError, ValueError):
        raise ValueError(f"{path}: unreadable (torn, or not a checkpoint written by longrecipe)") from None


def restore(ckpt: Path, model, opt, sched, dist, net, fsdp: bool = False) -> int:
    """Load a checkpoint of either format into this run (FSDP2 or not, any world size); returns its step."""
    state = load_plain(ckpt / "state.pt")
    if (ckpt / DCP_METADATA).is_file():
        load_sharded(ckpt, net, opt, state["param_groups"])
    elif not fsdp:
        if "optimizer" not in state:
            raise ValueError(f"{ckpt}: a gathered multi-process checkpoint of an older version; resume it with the "
                             f"processes that wrote it")
        st.load_model(model, str(ckpt / "model.safetensors"), device=str(next(model.parameters()).device))
        opt.load_state_dict(state["optimizer"])
    else:  # a single-process checkpoint into FSDP2: the main process reads it and each process takes its shard
        from torch.distributed.checkpoint import state_dict as sd  # local: FSDP2 runs only

        options = sd.StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
        weights = st.load_file(str(ckpt / "model.safetensors")) if dist.main else {}
        sd.set_model_state_dict(model, weights, options=options)
        if not dist.main:
            full = {}
        elif (ckpt / "optimizer.pt").is_file():  # gathered by an older version (FQN keys already)
            full = load_plain(ckpt / "optimizer.pt")
        else:
            full = _single_process_optimizer(model, state["optimizer"])
        sd.set_optimizer_state_dict(net, opt, full, options=options)
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def _single_process_optimizer(model, saved: dict) -> dict:
    """A plain `opt.state_dict()` (parameters by index) keyed by parameter names, as FSDP2's loader wants."""
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    state = {names[i]: v for i, v in saved["state"].items()}
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def load_sharded(ckpt: Path, net, opt=None, param_groups: list | None = None) -> None:
    """Fill `net` (and `opt`) from a DCP checkpoint, resharded to this run's processes (1 included)."""
    from torch.distributed.checkpoint import load  # local: DCP checkpoints only
    from torch.distributed.checkpoint import state_dict as sd

    target: dict[str, Any] = {"model": sd.get_model_state_dict(net)}
    if opt is not None:
        target["optim"] = {"state": sd.get_optimizer_state_dict(net, opt)["state"]}  # creates AdamW's state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process": it is
        load(target, storage_reader=SafeReader(str(ckpt)))
    sd.set_model_state_dict(net, target["model"])
    if opt is not None:
        sd.set_optimizer_state_dict(net, opt, {"state": target["optim"]["state"], "param_groups": param_groups})


_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "TensorStorageMetadata", "TensorProperties",
                                              "ChunkStorageMetadata", "MetadataIndex", "StorageMeta",
                                              "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()) or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                  torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in checkpoint metadata")


def _safe_reader_class():
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class Reader(FileSystemReader):
        """DCP's file reader with `.metadata` unpickled through an allowlist (see the module docstring)."""

        def read_metadata(self, *args: Any, **kwargs: Any):
            path = Path(self.path) / DCP_METADATA
            try:
                with open(path, "rb") as f:
                    metadata = _MetadataUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as err:
                raise ValueError(f"{path}: refused to load ({err}); nothing in it was run") from None
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return Reader


def SafeReader(path: str):  # noqa: N802  (a class, built on first use: DCP is imported only when needed)
    return _safe_reader_class()(path)


def agreed_checkpoint(out: Path, dist) -> Path | None:
    """The main process checks the manifests (hashing once) and every process resumes from its choice."""
    choice = [""]
    if dist.main:
        try:
            ckpt = latest_checkpoint(out)
            choice = [str(ckpt) if ckpt is not None else ""]
        except ValueError as err:
            choice = [f"error: {err}"]
    if dist.world > 1:
        torch.distributed.broadcast_object_list(choice, src=0)
    if choice[0].startswith("error: "):
        raise ValueError(choice[0][len("error: "):])
    return Path(choice[0]) if choice[0] else None
