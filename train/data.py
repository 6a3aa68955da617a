"""Training samples for each method, built from long documents split at their real sentence boundaries.

Why sentence boundaries from the very text trained on: LongRecipe keeps positions contiguous inside a sentence
and jumps between sentences; the reference code takes its segments from a different, unfiltered text, so its
jumps fall mid-sentence. Here the boundaries come from the character offsets of the tokens of the sample itself.
Every sample is drawn from generators seeded by (seed, step, micro-batch, rank, row): resuming at step k needs no
saved data state and reproduces the same stream. The document and the target-length window a row comes from are
drawn from a stream of their own, which no method's choices consume, so every method trains on the same windows
in the same order and differs only in the view it takes of them (the study compares methods on the same samples).
A target whose needle (the text it is retrieved from) is not in the row, before it, is not a target of that row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from longrecipe.base import corpus
from longrecipe.train import positions as P
from longrecipe.train.config import DataConfig, TrainConfig
from longrecipe.train.lexicon import anchors_from, sentence_types
from longrecipe.train.loop import IGNORE
from longrecipe.train.store import TokenStore

SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass(frozen=True)
class Document:
    ids: np.ndarray  # token ids
    starts: np.ndarray  # token index where each sentence starts (0 first), sorted
    loss: np.ndarray | None = None  # per token: is it a training target? (None: every token is)
    # (answer_lo, answer_hi, needle_lo, needle_hi) token ranges: the answer is a target only where the row holds
    # the whole needle before it
    deps: np.ndarray | None = None


def load_texts(cfg: DataConfig) -> list[str]:
    """The text documents of a data source (one-line errors with the file and line for bad JSONL)."""
    return corpus.load_texts(cfg.source, cfg.text_field)


def load_documents(cfg: DataConfig) -> list[tuple[str, list[tuple[int, int]] | None]]:
    """(text, loss spans or None) per document (see corpus.load_documents)."""
    return corpus.load_documents(cfg.source, cfg.text_field)


def tokenize_document(tokenizer: Any, text: str, loss_spans: list[tuple[int, ...]] | None = None) -> Document:
    """Token ids of `text`, the token indices where its sentences start (from the tokens' char offsets), and
    which tokens are targets when `loss_spans` is given (a token is one when it overlaps a span; a span of four
    also names its needle's characters, kept as token ranges in `deps`)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"]).reshape(-1, 2)
    token_starts = offsets[:, 0]
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    starts = np.unique(np.concatenate([[0], np.searchsorted(token_starts, ends)]))
    loss, deps = None, []
    if loss_spans is not None:
        loss = np.zeros(len(ids), dtype=bool)
        for span in loss_spans:
            hit = (offsets[:, 0] < span[1]) & (offsets[:, 1] > span[0])
            loss |= hit
            if len(span) == 4 and hit.any():
                need = np.flatnonzero((offsets[:, 0] < span[3]) & (offsets[:, 1] > span[2]))
                ans = np.flatnonzero(hit)
                deps.append((ans[0], ans[-1] + 1, need[0], need[-1] + 1) if len(need) else (ans[0], ans[-1] + 1, 0, 0))
    return Document(ids=ids, starts=starts[starts < len(ids)], loss=loss,
                    deps=np.asarray(deps, dtype=np.int64).reshape(-1, 4) if deps else None)


def row_targets(doc: Document, idx: np.ndarray) -> np.ndarray | None:
    """Which tokens of the row made of `doc`'s tokens `idx` are targets: the document's loss mask, less every answer
    whose needle is not wholly in the row before the answer's first token (it cannot be retrieved there, and
    training on it would teach guessing). A needle range of (0, 0) can never be met."""
    if doc.loss is None:
        return None
    keep = doc.loss[idx].copy()
    if doc.deps is None:
        return keep
    for a0, a1, n0, n1 in doc.deps:
        rows = np.flatnonzero((idx >= a0) & (idx < a1))
        if not len(rows):
            continue
        before = idx[: rows[0]]
        if n1 <= n0 or not np.isin(np.arange(n0, n1), before).all():
            keep[rows] = False
    return keep


def segments_in(doc: Document, lo: int, hi: int) -> list[int]:
    """Lengths of the sentence pieces that tile tokens [lo, hi) of `doc`."""
    inner = doc.starts[(doc.starts > lo) & (doc.starts < hi)]
    cuts = np.concatenate([[lo], inner, [hi]])
    return np.diff(cuts).astype(int).tolist()


class SampleBuilder:
    """Builds (input_ids, position_ids) rows for one method from a pool of long documents."""

    BUILDERS: ClassVar[dict[str, Callable[..., tuple[Document, np.ndarray, list[int]]]]]

    def __init__(self, docs: Sequence[Document], data: DataConfig, train: TrainConfig, bos: int | None,
                 short: list[list[int]] | None = None, decode: Any = None):
        """`docs`: a list of documents, or a TokenStore (documents read lazily from memory maps)."""
        self.docs, self.data, self.train, self.bos, self.decode = docs, data, train, bos, decode
        lengths = getattr(docs, "lengths", None)
        self.lengths = np.asarray(lengths if lengths is not None else [len(d.ids) for d in docs], dtype=np.int64)
        self._long: dict[int, np.ndarray] = {}
        self._anchor_cache: dict[int, np.ndarray] = {}
        self.anchors = data.anchors
        if data.anchors_from:
            self.anchors = anchors_from(data.anchors_from)
        need = train.target_length if train.stage == "extension" else 1
        self.short = [([bos] if bos is not None else []) + p for p in short] if short else []
        if train.stage == "replay" and not self.short:
            raise ValueError("replay needs short documents")
        longest = int(self.lengths.max()) if len(self.lengths) else 0
        if len(self.lengths) and longest < need:
            raise ValueError(f"no document has {need} tokens (the longest has {longest})")

    def _long_enough(self, length: int) -> np.ndarray:
        """Indices of the documents with at least `length` tokens (once per length, not once per row)."""
        if length not in self._long:
            self._long[length] = np.flatnonzero(self.lengths >= length)
        return self._long[length]

    def _draw_window(self, rng: np.random.Generator) -> tuple[int, int]:
        """(document index, start) of a target-length window: the sample every method takes its view of."""
        length = self.train.target_length
        long = self._long_enough(length)
        index = int(long[int(rng.integers(len(long)))])
        return index, int(rng.integers(0, int(self.lengths[index]) - length + 1))

    def sample(self, rng: np.random.Generator, window: tuple[int, int] | None = None, plain: bool = False
               ) -> tuple[list[int], list[int], list[int] | None, list[bool] | None]:
        """(input ids, position ids, document ids or None, loss mask or None) of one row; `window` (document, start)
        from `_draw_window` (drawn from `rng` when not given). A `plain` row of a position-transform method is
        train_length contiguous tokens of the window at positions 0..n-1 (FLT's rows are plain already)."""
        if self.train.stage == "replay":
            return (*self._packed(rng), None)
        index, lo = window if window is not None else self._draw_window(rng)
        doc = self.docs[index]
        if plain and not P.METHODS[self.train.method].full_length:
            idx, pos = self._contiguous(rng, lo), P.flt_positions(self.train.train_length)
        else:
            idx, pos = self.BUILDERS[self.train.method](self, rng, doc, index, lo)
        keep = row_targets(doc, idx)
        return doc.ids[idx].tolist(), pos, None, keep.tolist() if keep is not None else None

    def _flt(self, rng: np.random.Generator, doc: Document, index: int, lo: int) -> tuple[np.ndarray, list[int]]:
        n = self.train.train_length  # = the target length (validated)
        return np.arange(lo, lo + n), P.flt_positions(n)

    def _contiguous(self, rng: np.random.Generator, lo: int) -> np.ndarray:
        """train_length contiguous tokens at a random offset inside the window."""
        t, n = self.train, self.train.train_length
        start = lo + int(rng.integers(0, t.target_length - n + 1))
        return np.arange(start, start + n)

    def _randpos(self, rng: np.random.Generator, doc: Document, index: int, lo: int) -> tuple[np.ndarray, list[int]]:
        t, n = self.train, self.train.train_length
        return self._contiguous(rng, lo), P.randpos_positions(n, t.target_length, rng)

    def _pose(self, rng: np.random.Generator, doc: Document, index: int, lo: int) -> tuple[np.ndarray, list[int]]:
        t, n = self.train, self.train.train_length
        pos = P.pose_positions(n, t.target_length, rng)
        split = next((i for i in range(1, n) if pos[i] != pos[i - 1] + 1), n)
        # chunk 2 is cropped from later in the same window (the reference's rt2 ~ U[len_chunk, len_input])
        end2 = lo + int(rng.integers(n, t.target_length + 1))
        return np.concatenate([np.arange(lo, lo + split), np.arange(end2 - (n - split), end2)]), pos

    def _longrecipe(self, rng: np.random.Generator, doc: Document, index: int, lo: int
                    ) -> tuple[np.ndarray, list[int]]:
        if self.data.selection == "random":
            return self._random_selection(rng, doc, lo)
        if self.data.selection == "impactful":
            return self._impactful(rng, doc, index, lo)
        idx = self._contiguous(rng, lo)
        return idx, self._positions(segments_in(doc, int(idx[0]), int(idx[-1]) + 1), rng)

    def _positions(self, segments: list[int], rng: np.random.Generator) -> list[int]:
        return P.longrecipe_positions(segments, self.train.target_length, rng, self.data.max_gap)

    def _random_selection(self, rng: np.random.Generator, doc: Document, lo: int) -> tuple[np.ndarray, list[int]]:
        """Keep each sentence of a target-length window with probability keep_prob until train_length tokens."""
        t, n = self.train, self.train.train_length
        segs = segments_in(doc, lo, lo + t.target_length)
        starts = lo + np.concatenate([[0], np.cumsum(segs)[:-1]])
        idx: list[int] = []
        lengths: list[int] = []
        for a, ln in zip(starts, segs):
            if sum(lengths) < n and rng.random() < self.data.keep_prob:
                take = min(ln, n - sum(lengths))
                idx.extend(range(a, a + take))
                lengths.append(take)
        if sum(lengths) < n:  # too few sentences kept: top up from the window's end, contiguous
            idx.extend(range(lo + t.target_length - (n - sum(lengths)), lo + t.target_length))
            lengths.append(n - sum(lengths))
        return np.asarray(idx), self._positions(lengths, rng)

    def _anchored(self, doc_index: int) -> np.ndarray:
        """Per sentence of a document: does it carry an anchor (computed once per document)?"""
        if doc_index not in self._anchor_cache:
            doc = self.docs[doc_index]
            bounds = np.concatenate([doc.starts, [len(doc.ids)]])
            anchors = set(self.anchors)
            flags = []
            for a, b in zip(bounds[:-1], bounds[1:]):
                text = self.decode(doc.ids[a:b].tolist())
                if self.data.anchor_mode == "digit":
                    flags.append(any(c.isdigit() for c in text))
                else:
                    flags.append(bool(sentence_types(text) & anchors))
            self._anchor_cache[doc_index] = np.asarray(flags, dtype=bool)
        return self._anchor_cache[doc_index]

    def _impactful(self, rng: np.random.Generator, doc: Document, index: int, lo: int
                   ) -> tuple[np.ndarray, list[int]]:
        """LongRecipe selection inside the window: from its first whole sentence on, keep anchor sentences (others
        with probability keep_other) until exactly train_length tokens, in order; positions jump between the kept
        sentences. A window with too few of them is walked again (wrapping around: kept sentences upsampled)."""
        n, hi = self.train.train_length, lo + self.train.target_length
        flags = self._anchored(index)
        if not flags.any() and self.data.keep_other == 0:
            raise ValueError("no sentence of the data carries an anchor type; lower data.anchors or raise "
                             "data.keep_other")
        bounds = np.concatenate([doc.starts, [len(doc.ids)]])
        first = int(np.searchsorted(bounds, lo, side="left"))  # the first sentence that starts inside the window
        last = int(np.searchsorted(bounds, hi, side="right")) - 1  # sentences first..last-1 end inside it
        if last <= first:  # no whole sentence in the window: its tokens, contiguous
            return np.arange(lo, lo + n), self._positions([n], rng)
        idx: list[int] = []
        lengths: list[int] = []
        s, passes = first, 0
        while len(idx) < n:
            if flags[s] or rng.random() < self.data.keep_other:
                piece = range(int(bounds[s]), min(int(bounds[s + 1]), int(bounds[s]) + n - len(idx)))
                idx.extend(piece)
                lengths.append(len(piece))
            s += 1
            if s >= last:  # walk the window again: kept sentences upsampled
                s, passes = first, passes + 1
                if not idx and passes > 100:  # nothing to keep: the window's tokens, contiguous
                    return np.arange(lo, lo + n), self._positions([n], rng)
        return np.asarray(idx), self._positions(lengths, rng)

    def _packed(self, rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
        """Replay rows: short documents packed whole (the last one cut), positions restarting at 0 per document."""
        n = self.train.train_length
        ids: list[int] = []
        pos: list[int] = []
        docs: list[int] = []
        while len(ids) < n:
            d = self.short[int(rng.integers(len(self.short)))][: n - len(ids)]
            docs.extend([len(set(docs))] * len(d))
            pos.extend(range(len(d)))
            ids.extend(d)
        return ids, pos, docs

    def batch(self, seed: int, step: int, micro: int, rank: int, size: int) -> dict[str, torch.Tensor]:
        rows = []
        for i in range(size):
            rng = np.random.default_rng([seed, step, micro, rank, i, 1])  # the method's own choices
            if self.train.stage == "replay":
                rows.append(self.sample(rng))
                continue
            shared = np.random.default_rng([seed, step, micro, rank, i, 0])  # the same for every method
            window = self._draw_window(shared)
            plain = bool(shared.random() < self.data.plain_fraction)  # never with 0; the window is drawn first
            rows.append(self.sample(rng, window, plain))
        ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
        labels = ids.clone()
        for i, r in enumerate(rows):
            if r[3] is not None:  # completion-only rows: tokens outside the loss spans are not targets
                labels[i, ~torch.tensor(r[3], dtype=torch.bool)] = IGNORE
        out = {"input_ids": ids, "position_ids": torch.tensor([r[1] for r in rows]), "labels": labels}
        if rows[0][2] is not None:
            out["doc_ids"] = torch.tensor([r[2] for r in rows])
        return out


# One row builder per registered position method (positions.METHODS): the window a row is cut from and its ids.
SampleBuilder.BUILDERS = {"longrecipe": SampleBuilder._longrecipe, "pose": SampleBuilder._pose,
                          "randpos": SampleBuilder._randpos, "flt": SampleBuilder._flt}
if set(SampleBuilder.BUILDERS) != set(P.METHODS):
    raise ImportError(f"position methods without a row builder: {sorted(set(P.METHODS) - set(SampleBuilder.BUILDERS))}")


def build(tokenizer: Any, data: DataConfig, train: TrainConfig, store: str | Path | None = None) -> SampleBuilder:
    """Long documents for extension (from `store`, a token store, when given: see store.py); for replay, short
    documents (Python corpus paragraphs, or JSONL rows)."""
    if train.stage == "replay":
        if data.source == "python":
            texts = list(corpus.paragraphs())
        else:
            texts = load_texts(data)
        short = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return SampleBuilder([], data, train, tokenizer.bos_token_id, [s for s in short if s])
    if store is not None:
        docs: Sequence[Document] = TokenStore(store, tokenizer)
    else:
        docs = [tokenize_document(tokenizer, t, spans) for t, spans in load_documents(data)]
    return SampleBuilder(docs, data, train, tokenizer.bos_token_id, decode=tokenizer.decode)


def statistics(builder: SampleBuilder, samples: int = 64, seed: int = 0) -> dict[str, float]:
    """What the produced data looks like: mean contiguous segment length, mean and max position span."""
    rng = np.random.default_rng(seed)
    cov = [P.coverage(builder.sample(rng)[1]) for _ in range(samples)]
    return {"mean_segment": float(np.mean([c["mean_run"] for c in cov])),
            "mean_span": float(np.mean([c["span"] for c in cov])), "max_span": int(max(c["span"] for c in cov))}
