"""Token store: a JSONL corpus tokenized once into flat memory-mapped arrays, read lazily by every process.

Why: tokenizing the whole corpus in every process's memory (lists of arrays, plus the tokenizer's offsets) makes
host memory grow with the corpus and repeats the work on every rank and every run. The store is written in one
streaming pass (one document in memory at a time), committed every few hundred documents (a killed build resumes
from its last commit: files are cut back to the committed sizes and reading seeks to the committed byte offset),
and opened as memory maps, so each process touches only the pages of the rows it trains on.

Files: tokens.u32 (token ids), sentences.i64 (token index of each sentence start within its document),
loss.u8 (1 = training target, for corpora with `loss_spans`), deps.i64 ((document, answer_lo, answer_hi,
needle_lo, needle_hi) per answer that needs a needle, see data.row_targets), docs.i64 ((token offset, sentence
offset) per document), meta.json (what the store was built from, the committed sizes, `complete`). The rows a
run trains on are a function of (seed, step, row index) only, so a checkpoint's step is the data position: nothing
else to save.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from longrecipe.base import sources
from longrecipe.base.io import write_text
from longrecipe.base.tokenization import tokenizer_hash

VERSION = 2  # 2: deps.i64
FILES = {"tokens.u32": np.uint32, "sentences.i64": np.int64, "loss.u8": np.uint8, "deps.i64": np.int64,
         "docs.i64": np.int64}
META = "meta.json"


def is_store(path: str | os.PathLike) -> bool:
    return (Path(path) / META).is_file()


def is_complete(path: str | os.PathLike) -> bool:
    """A store whose build finished (an interrupted one resumes with `build`)."""
    try:
        return bool(json.loads((Path(path) / META).read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def _identity(source: str, tokenizer: Any, text_field: str) -> dict[str, Any]:
    return {"version": VERSION, **sources.identity(source), "text_field": text_field,
            "tokenizer": tokenizer_hash(tokenizer)}


def validate(source: str | os.PathLike, text_field: str = "text") -> None:
    """Read every document of a JSONL or Parquet source once, in constant memory, so that a bad row fails before
    anything is written (the build itself streams, and would stop half-way). A hub dataset is checked by its
    first row only (streaming all of it twice would double the cost); a bad later row stops the build, which
    resumes once the row is fixed."""
    source = str(source)
    docs = 0
    for _ in itertools.islice(sources.records(source, text_field), 1 if sources.kind(source) == "hub" else None):
        docs += 1
    if not docs:
        raise ValueError(f"{source}: no documents")


def build(source: str | os.PathLike, tokenizer: Any, out: str | os.PathLike, text_field: str = "text",
          commit_every: int = 256, progress: bool = True) -> Path:
    """Tokenize `source` (JSONL, Parquet or hub:NAME: longrecipe.base.sources) into a store at `out`, resuming a
    build that was interrupted; a no-op when the store is complete. A store built from another source, version
    of it, field or tokenizer is an error."""
    from longrecipe.train.data import tokenize_document  # local: data imports this module

    source, out = str(source), Path(out)
    ident = _identity(source, tokenizer, text_field)
    meta: dict[str, Any] = {}
    if is_store(out):
        meta = json.loads((out / META).read_text())
        if meta.get("version") != VERSION:
            raise ValueError(f"{out} is a token store of format version {meta.get('version')} (this longrecipe "
                             f"reads version {VERSION}); remove it and tokenize again")
        if {k: meta.get(k) for k in ident} != ident:
            raise ValueError(f"{out} is a token store of another source, field or tokenizer; remove it or choose "
                             f"another place")
        if meta.get("complete"):
            return out
    out.mkdir(parents=True, exist_ok=True)
    sizes = meta.get("sizes", dict.fromkeys(FILES, 0))
    state = {"offset": meta.get("offset", 0), "line": meta.get("line", 0), "docs": meta.get("docs", 0),
             "tokens": meta.get("tokens", 0), "sentences": meta.get("sentences", 0),
             "has_loss": meta.get("has_loss", False)}
    for name in FILES:  # anything past the last commit is from a killed build: cut it off
        with open(out / name, "ab") as f:
            f.truncate(sizes[name])
    handles = {name: open(out / name, "ab") for name in FILES}  # noqa: SIM115  (closed below, in one place)

    def commit(complete: bool = False) -> None:
        for f in handles.values():
            f.flush()
            os.fsync(f.fileno())
        sizes = {name: (out / name).stat().st_size for name in FILES}
        write_text(out / META, json.dumps({**ident, **state, "sizes": sizes, "complete": complete}, indent=1) + "\n")

    jsonl = sources.kind(source) == "jsonl"
    try:
        with tqdm(total=ident["source_bytes"] if jsonl else None, initial=state["offset"] if jsonl else state["line"],
                  unit="B" if jsonl else " docs", unit_scale=jsonl, desc="tokenize", disable=not progress) as bar:
            pending = 0
            for rec in sources.records(source, text_field, state["offset"], state["line"]):
                bar.update(rec.offset - state["offset"] if jsonl else rec.line - state["line"])
                state["offset"], state["line"] = rec.offset, rec.line
                doc = tokenize_document(tokenizer, rec.text, rec.spans)
                handles["docs.i64"].write(np.array([state["tokens"], state["sentences"]], np.int64).tobytes())
                handles["tokens.u32"].write(doc.ids.astype(np.uint32).tobytes())
                handles["sentences.i64"].write(doc.starts.astype(np.int64).tobytes())
                loss = np.ones(len(doc.ids), np.uint8) if doc.loss is None else doc.loss.astype(np.uint8)
                handles["loss.u8"].write(loss.tobytes())
                if doc.deps is not None:
                    rows = np.column_stack([np.full(len(doc.deps), state["docs"]), doc.deps]).astype(np.int64)
                    handles["deps.i64"].write(rows.tobytes())
                state["has_loss"] = state["has_loss"] or doc.loss is not None
                state["docs"] += 1
                state["tokens"] += len(doc.ids)
                state["sentences"] += len(doc.starts)
                pending += 1
                if pending >= commit_every:
                    commit()
                    pending = 0
        if not state["docs"]:
            raise ValueError(f"{source}: no documents")
        commit(complete=True)
    finally:
        for h in handles.values():
            h.close()
    return out


class TokenStore(Sequence):
    """The documents of a complete store as `Document`s whose arrays are views of memory maps."""

    def __init__(self, path: str | os.PathLike, tokenizer: Any = None):
        from longrecipe.train.data import Document  # local: data imports this module

        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / META).read_text())
        except (OSError, ValueError):
            raise ValueError(f"{self.path}: not a token store (no readable {META})") from None
        if self.meta.get("version") != VERSION:
            raise ValueError(f"{self.path}: a token store of format version {self.meta.get('version')} (this "
                             f"longrecipe reads version {VERSION}); remove it and tokenize again")
        if not self.meta.get("complete"):
            raise ValueError(f"{self.path}: an incomplete or foreign token store; finish it with `longrecipe tokenize`")
        if tokenizer is not None and self.meta["tokenizer"] != tokenizer_hash(tokenizer):
            raise ValueError(f"{self.path}: tokenized with another tokenizer than the model's")
        self._doc = Document
        n, total, sents = self.meta["docs"], self.meta["tokens"], self.meta["sentences"]
        arrays = {name: np.memmap(self.path / name, dtype=dt, mode="r") if (self.path / name).stat().st_size
                  else np.zeros(0, dt) for name, dt in FILES.items()}
        self.tokens, self.sentences, self.loss = arrays["tokens.u32"], arrays["sentences.i64"], arrays["loss.u8"]
        self.deps = np.asarray(arrays["deps.i64"]).reshape(-1, 5)
        self.dep_off = np.searchsorted(self.deps[:, 0], np.arange(n + 1))
        index = np.asarray(arrays["docs.i64"]).reshape(-1, 2)
        if len(index) != n or len(self.tokens) != total or len(self.sentences) != sents:
            raise ValueError(f"{self.path}: its files do not match its meta.json (torn or modified)")
        self.tok_off = np.append(index[:, 0], total)
        self.sent_off = np.append(index[:, 1], sents)
        self.lengths = np.diff(self.tok_off)
        self.has_loss = bool(self.meta.get("has_loss"))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int):
        a, b = self.tok_off[i], self.tok_off[i + 1]
        starts = np.asarray(self.sentences[self.sent_off[i]:self.sent_off[i + 1]])
        loss = np.asarray(self.loss[a:b]).astype(bool) if self.has_loss else None
        deps = self.deps[self.dep_off[i]:self.dep_off[i + 1], 1:]
        return self._doc(ids=self.tokens[a:b], starts=starts, loss=loss, deps=deps if len(deps) else None)
