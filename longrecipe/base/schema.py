"""Results schema v1, written down in code.

A results file is one JSON object:

    {"schema_version": 1,
     "run":     {id, created, command, git_sha, git_dirty, config, versions, seed, hardware},
     "model":   {path, rope_parameters, max_position_embeddings},
     "backend": "hf" | "vllm" | "lm-eval" | ...,
     "scores":  [{suite, task, task_version, context_length, depth, metric, value, n, n_null}, ...],
     "manifest": {setting: value}}   # optional (files written before it have none): every setting that moves
                                     # a score (evaluate/runner.py run_manifest), compared by reports/settings.py

Scores are tidy: one row per (suite, task, context_length, depth, metric); context length is a column, never part
of a metric name. `context_length` and `depth` are null where they do not apply (e.g. a short general task).
Per-sample predictions live beside it as JSONL (one object per line).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import types
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrecipe.base.io import write_json

SCHEMA_VERSION = 1
# metrics reported as they are (not fractions x100) and where lower is better: perplexities, bits per byte
RAW_METRICS = frozenset({"word_perplexity", "byte_perplexity", "bits_per_byte", "perplexity"})


class SchemaError(ValueError):
    """A results or predictions file that does not follow the schema (one line, names the file)."""


@dataclass(frozen=True)
class ScoreRow:
    suite: str
    task: str
    metric: str
    value: float
    task_version: int | float | str = 1  # lm-eval reports versions as numbers such as 1.0
    context_length: int | None = None
    depth: float | None = None
    n: int = 0
    n_null: int = 0


@dataclass(frozen=True)
class ModelInfo:
    path: str
    rope_parameters: dict[str, Any] | None = None
    max_position_embeddings: int | None = None


@dataclass(frozen=True)
class RunInfo:
    id: str
    created: str
    command: str
    git_sha: str | None
    git_dirty: bool | None
    config: dict[str, Any]
    versions: dict[str, str]
    seed: int | None
    hardware: dict[str, Any]


@dataclass(frozen=True)
class Results:
    run: RunInfo
    model: ModelInfo
    backend: str
    scores: tuple[ScoreRow, ...] = field(default_factory=tuple)
    manifest: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scores"] = [dataclasses.asdict(s) for s in self.scores]
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: Any, source: str = "results") -> Results:
        """Every field type-checked: a file that does not follow the schema is one SchemaError naming the file and
        the field, never a traceback later in a report or a gate."""
        if not isinstance(d, dict):
            raise SchemaError(f"{source}: expected a JSON object, got {type(d).__name__}")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(f"{source}: schema_version {d.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        scores = d.get("scores")
        if not isinstance(scores, list):
            raise SchemaError(f"{source}: field 'scores' must be a list")
        manifest = d.get("manifest", {})
        if not isinstance(manifest, dict):
            raise SchemaError(f"{source}: field 'manifest' must be an object")
        return cls(run=_typed(RunInfo, d.get("run"), f"{source}: run"),
                   model=_typed(ModelInfo, d.get("model"), f"{source}: model"),
                   backend=_field(d, "backend", str, f"{source}: backend"),
                   scores=tuple(_typed(ScoreRow, s, f"{source}: scores[{i}]") for i, s in enumerate(scores)),
                   manifest=manifest)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Results:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"{path}: no such results file") from None
        except json.JSONDecodeError as err:
            raise SchemaError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None
        return cls.from_dict(data, str(path))


def _matches(value: Any, tp: Any) -> bool:
    """Whether a JSON value has the annotated type (ints count as floats; bools are not numbers)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if typing.get_origin(tp) is dict or tp is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _field(d: dict, key: str, tp: Any, where: str) -> Any:
    if key not in d:
        raise SchemaError(f"{where}: missing")
    if not _matches(d[key], tp):
        raise SchemaError(f"{where}: expected {_type_name(tp)}, got {d[key]!r:.60}")
    return d[key]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(typing.get_origin(tp) or tp, "__name__", str(tp))


def _typed(cls: type, d: Any, where: str) -> Any:
    """A schema dataclass from a JSON object: unknown and missing fields, and wrong types, are SchemaErrors."""
    if not isinstance(d, dict):
        raise SchemaError(f"{where}: expected an object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in d if k not in fields)
    if unknown:
        raise SchemaError(f"{where}: unknown field {unknown[0]!r}")
    kwargs = {}
    for name, f in fields.items():
        if name in d:
            kwargs[name] = _field(d, name, hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where}.{name}: missing")
    return cls(**kwargs)


def _git(*args: str, cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("longrecipe", "torch", "transformers", "tokenizers", "vllm", "lm_eval", "numpy", "pandas"):
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def portable_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Absolute paths that exist here, made relative to the working directory. Why: results are committed and read
    on other machines (seeds run apart, `longrecipe report --seeds`); a path taken from the environment
    (LONGRECIPE_ESSAYS_DIR) or typed absolute names one machine's layout, a relative one the layout of the run."""
    def one(v: Any) -> Any:
        return os.path.relpath(v) if isinstance(v, str) and os.path.isabs(v) and os.path.exists(v) else v

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in config.items()}


def run_info(command: str, config: dict[str, Any], seed: int | None = None) -> RunInfo:
    """Metadata of the current run: id, time, git sha and dirty flag of this checkout, versions, hardware."""
    repo = Path(__file__).resolve().parent
    sha = _git("rev-parse", "HEAD", cwd=repo)
    dirty = None if sha is None else bool(_git("status", "--porcelain", cwd=repo))
    now = dt.datetime.now(dt.timezone.utc)
    return RunInfo(id=f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", created=now.isoformat(timespec="seconds"),
                   command=command, git_sha=sha, git_dirty=dirty, config=portable_paths(config),
                   versions=library_versions(), seed=seed, hardware=hardware())


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; a malformed line is a SchemaError naming file and line."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SchemaError(f"{path}:{i}: malformed JSON line ({err.msg})") from None
            if not isinstance(row, dict):
                raise SchemaError(f"{path}:{i}: expected a JSON object")
            yield i, row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSONL; a malformed line is a SchemaError with the file and line number."""
    return [row for _, row in iter_jsonl(path)]


def append_jsonl(path: str | Path, *rows: dict[str, Any]) -> None:
    """Append complete lines in one write and flush them to disk: a kill leaves at most the last line incomplete
    (`drop_torn_line` removes it)."""
    import os

    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())


def drop_torn_line(path: Path) -> None:
    """Remove a last line without its newline (what a kill during `append_jsonl` leaves), so that the file reads."""
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        path.write_bytes(raw[: raw.rfind(b"\n") + 1])
