"""Where training documents come from: a JSONL file, Parquet files, or a Hugging Face dataset (`hub:NAME`).

Why one reader: the token store (train/store.py) tokenizes a corpus in one resumable streaming pass, and replay
loads short documents into memory; both need the same rows, the same one-line errors, and a cursor they can resume
from. Every source streams (one JSONL line, one Parquet batch or one dataset row in memory at a time).

- JSONL (`*.jsonl`, or any other file): one object per line; the cursor is the byte offset and line number.
- Parquet: a `*.parquet` file or a folder of them (searched recursively, read in sorted order, as hub datasets
  lay out their shards); the cursor is the number of rows read. Needs pyarrow (`pip install pyarrow`).
- `hub:NAME` or `hub:NAME@SPLIT` (default split `train`): `datasets.load_dataset(NAME, split=SPLIT,
  streaming=True)`, e.g. the paper's `hub:yaofu/slimpajama-per-source-length-upsample`; offline it reads only what
  the Hugging Face cache holds (or a local dataset folder given as NAME). The cursor is the number of rows read.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base.corpus import document_fields

HUB = "hub:"
BATCH = 256  # Parquet rows per read: the only rows in memory


@dataclass(frozen=True)
class Record:
    """One document and the cursor just past it (what a resumed pass starts from)."""

    offset: int  # JSONL: byte offset after this line; other sources: 0
    line: int  # JSONL: line number; other sources: rows read, this one included
    text: str
    spans: list[tuple[int, int]] | None


def kind(source: str) -> str:
    """'hub', 'parquet' or 'jsonl'."""
    if str(source).startswith(HUB):
        return "hub"
    path = Path(source)
    if path.suffix == ".parquet" or (path.is_dir() and next(path.rglob("*.parquet"), None) is not None):
        return "parquet"
    return "jsonl"


def _parquet_files(source: str) -> list[Path]:
    path = Path(source)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        raise FileNotFoundError(f"data.source {source!r}: no such Parquet file")
    return files


def identity(source: str) -> dict[str, Any]:
    """What a store records about its source, so that a store of another or a changed source is refused."""
    k = kind(source)
    if k == "hub":
        return {"source": str(source), "source_bytes": None, "source_mtime_ns": None}
    files = _parquet_files(source) if k == "parquet" else [Path(source)]
    if k == "jsonl" and not files[0].is_file():
        raise FileNotFoundError(f"data.source {source!r}: no such file (use 'python', a JSONL or Parquet path, "
                                f"hub:NAME, or a token store)")
    stats = [f.stat() for f in files]
    where = str(files[0].resolve()) if k == "jsonl" else str(Path(source).resolve())
    return {"source": where, "source_bytes": sum(s.st_size for s in stats),
            "source_mtime_ns": max(s.st_mtime_ns for s in stats)}


def records(source: str, text_field: str = "text", offset: int = 0, line: int = 0) -> Iterator[Record]:
    """The documents of `source` from a cursor on (blank JSONL lines are skipped)."""
    k = kind(source)
    if k == "jsonl":
        yield from _jsonl(Path(source), text_field, offset, line)
    elif k == "parquet":
        yield from _parquet(source, text_field, line)
    else:
        yield from _hub(source, text_field, line)


def _jsonl(path: Path, text_field: str, offset: int, line: int) -> Iterator[Record]:
    identity(str(path))  # the missing-file error
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            line += 1
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{path}:{line}: malformed JSON line ({getattr(err, 'msg', err)})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line}: expected a JSON object")
            yield Record(offset, line, *document_fields(row, f"{path}:{line}", text_field))


def _parquet(source: str, text_field: str, skip: int) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq  # local: an optional dependency, only for Parquet sources
    except ImportError:
        raise ValueError(f"data.source {source!r}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    done = 0
    for path in _parquet_files(source):
        try:
            pf = pq.ParquetFile(path)
        except Exception as err:  # noqa: BLE001  (pyarrow's errors: one line naming the file)
            raise ValueError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
        rows = pf.metadata.num_rows
        if done + rows <= skip:  # a resumed pass skips whole files by their footer's row count
            done += rows
            continue
        names = pf.schema_arrow.names
        if text_field not in names:
            raise ValueError(f"{path}: no column {text_field!r} (columns: {', '.join(names)})")
        columns = [text_field] + (["loss_spans"] if "loss_spans" in names else [])
        for batch in pf.iter_batches(batch_size=BATCH, columns=columns):
            for row in batch.to_pylist():
                done += 1
                if done > skip:
                    yield Record(0, done, *document_fields(row, f"{path} row {done}", text_field))


def _hub(source: str, text_field: str, skip: int) -> Iterator[Record]:
    name, _, split = source[len(HUB):].partition("@")
    try:
        import datasets  # local: the hub path only
    except ImportError:
        raise ValueError(f"data.source {source!r}: hub datasets need the datasets package (pip install datasets)") \
            from None
    try:
        rows = iter(datasets.load_dataset(name, split=split or "train", streaming=True))
        first = next(rows, None)
    except Exception as err:  # noqa: BLE001  (offline, unknown name or split: one line, not a traceback)
        offline = " (offline: only datasets in the local Hugging Face cache can be read)" if (
            os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1") else ""
        raise ValueError(f"data.source {source!r}: cannot load the dataset{offline}: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if first is None:
        return
    for i, row in enumerate(itertools.chain([first], rows), 1):
        if i > skip:
            yield Record(0, i, *document_fields(row, f"{name}[{split or 'train'}] row {i}", text_field))
