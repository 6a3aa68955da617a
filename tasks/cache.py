"""Generated samples cached on disk, keyed by everything that decides them: a re-run (resume, another backend, the
report of a 1M-token run) reads them back instead of fitting haystacks to the tokenizer again.

RULER keeps its own cache (tasks/ruler/__init__.py, one file per task); the other generated families (json_kv,
HELMET Recall, GraphWalks, BABILong) share this one: <cache>/samples/<suite>/<length>-<key>.jsonl, written
atomically, where the key hashes the suite, its version, the tokenizer, the length, the count, the seed, the suite's
options and the content of its data sources.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrecipe.base.io import write_text
from longrecipe.base.model_dirs import cache_root
from longrecipe.base.schema import read_jsonl
from longrecipe.base.tokenization import tokenizer_hash
from longrecipe.tasks.base import Sample


def path(suite: str, version: int, tokenizer: Any, length: int, n: int, seed: int, options: Any,
         sources: dict[str, str] | None = None) -> Path:
    """Where these samples live: a hash of what decides them (`sources`: content hashes of data folders)."""
    parts = {"suite": suite, "version": version, "tokenizer": tokenizer_hash(tokenizer), "length": length, "n": n,
             "seed": seed, "options": dataclasses.asdict(options), "sources": sources or {}}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_root() / "samples" / suite / f"{length}-{key}.jsonl"


def samples(where: Path, build: Callable[[], list[Sample]]) -> list[Sample]:
    """The cached samples at `where`, else `build()` written there (a torn or foreign file is rebuilt)."""
    if where.is_file():
        try:
            return [Sample(**row) for row in read_jsonl(where)]
        except (TypeError, ValueError, KeyError):
            pass
    made = build()
    write_text(where, "".join(json.dumps(dataclasses.asdict(s), ensure_ascii=False) + "\n" for s in made))
    return made
