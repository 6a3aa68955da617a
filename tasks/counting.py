"""Exact token counts of long prompts without tokenizing each whole prompt.

Why: fitting a long-context sample to its token budget counts the tokens of many candidate prompts of up to
hundreds of thousands of tokens that differ only in how much haystack they hold. Tokenizing each candidate costs
~1 us per token; most of that work repeats the same words.

How: a prompt is cut at its *junctions*, every single space between two non-space characters (printable ASCII
ones under an NFKC/NFKD normalizer, which can turn other characters into spaces). For most
tokenizers no token and no pre-token ever spans such a junction, and the pre-tokens after it do not depend on what
came before it (byte-level BPE with the GPT-2, Llama-3 or Qwen splitting rules, SentencePiece-style `Metaspace`
splitting, or a '▁'-BPE whose vocabulary has no token crossing a word start). Then

    tokens(prompt) = tokens(first piece, special tokens included) + sum over later pieces of tail(piece)

where tail(piece) = tokens(ANCHOR + " " + piece) - tokens(ANCHOR) is what the piece adds after any junction. Tails
are cached per tokenizer (and sums of whole sentences, which haystacks repeat), so a prompt costs one
`str.split` and dictionary lookups instead of ~1 us per token; the total equals
`len(tokenizer(prompt)["input_ids"])` exactly. A tokenizer is certified for this from its own description
(normalizer, pre-tokenizer, added tokens), then confirmed on junctions between every printable ASCII character
and each kind of character (letters, digits, each punctuation mark, some non-ASCII); any other
tokenizer (or `exact_counts()`) counts by tokenizing the whole text.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import json
import os
import re
import weakref
from collections.abc import Iterator
from typing import Any

from longrecipe.base.tokenization import per_tokenizer

ANCHOR = "a"
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
_KINDS = "aZ7.,:;!?'\"-=()[]<>/\\_*#@$%&+|~`^{}"  # each kind of character the split rules tell apart
_SAMPLES = "\u2014\u2019\u201c\u00e9\u00a9\u4e2d\u0301\ufb01"  # a few non-ASCII neighbours for the check
# junction = a single space between two non-whitespace characters (printable ASCII ones when the normalizer may
# rewrite other characters into spaces: NFKC maps e.g. U+00A8 to ' \u0308')
_JUNCTION = {"unicode": re.compile(r"(?<=\S) (?=\S)"), "ascii": re.compile(r"(?<=[\x21-\x7e]) (?=[\x21-\x7e])")}
# the pre-tokenizer regexes whose splits never cross a junction (GPT-2 / Llama-3 and cl100k / Qwen2 / o200k)
_LLAMA3_TAIL = r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_KNOWN_SPLITS = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|" + _LLAMA3_TAIL,
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|" + _LLAMA3_TAIL,
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_SPACE_SPLITTERS = {"Whitespace", "WhitespaceSplit", "BertPreTokenizer"}
_REFINERS = {"Digits", "Punctuation", "UnicodeScripts"}  # split further by character class only
_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend"}
_ASCII_ONLY = {"NFKC", "NFKD"}
# LONGRECIPE_EXACT_COUNTS=1 counts every text whole (a check for a tokenizer one suspects; same results, slower)
_MAX_CACHED = 2_000_000  # pieces (or sentences) remembered per tokenizer, a few hundred MB at most
_FORCE_EXACT = contextvars.ContextVar("longrecipe_exact_counts",
                                      default=os.environ.get("LONGRECIPE_EXACT_COUNTS", "") not in ("", "0"))


@contextlib.contextmanager
def exact_counts() -> Iterator[None]:
    """Count every text by tokenizing it whole (the reference the additive counts are tested against)."""
    token = _FORCE_EXACT.set(True)
    try:
        yield
    finally:
        _FORCE_EXACT.reset(token)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TokenCounter:
    """Token counts of texts for one tokenizer, additive over junctions when the tokenizer allows it."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.refusal, self.junctions = refusal(tokenizer)
        self._heads: dict[str, int] = {}
        self._tails: dict[str, int] = {}
        self._leads: dict[str, int] = {}
        self._sentences: dict[str, int] = {}  # tail count of "sentence." after a junction
        self._recent: dict[str, int] = {}
        if self.refusal is None:
            self._anchor = self.exact(ANCHOR)
            self.refusal = self._confirm()

    @property
    def additive(self) -> bool:
        return self.refusal is None and not _FORCE_EXACT.get()

    def exact(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def count(self, text: str) -> int:
        """len(tokenizer(text)["input_ids"]), special tokens included."""
        if not self.additive:
            return self.exact(text)
        hit = self._recent.get(text)  # fitting counts its final prompt, then the record counts it again
        if hit is None:
            hit = self._recent[text] = self._count(text)
            if len(self._recent) > 8:
                del self._recent[next(iter(self._recent))]
        return hit

    def _count(self, text: str) -> int:
        if not self._all_junctions(text):
            return self._sum(_JUNCTION[self.junctions].split(text))
        sentences = text.split(". ")
        if len(sentences) < 3 or len(text) < 40 * len(sentences):  # few or short sentences: words it is
            return self._sum(text.split(" "))
        # every ". " is a junction: sum whole sentences, memoised (haystacks repeat them across probes)
        middle, memo = sentences[1:-1], self._sentences
        try:
            inner = sum(map(memo.__getitem__, middle))
        except KeyError:
            if len(memo) > _MAX_CACHED:
                memo.clear()
            new = [m for m in dict.fromkeys(middle) if m not in memo]
            self.learn(["", *(p for m in new for p in f"{m}.".split(" "))])
            memo.update((m, sum(self._tails[p] for p in f"{m}.".split(" "))) for m in new)
            inner = sum(map(memo.__getitem__, middle))
        last = sentences[-1].split(" ")
        return self._sum(f"{sentences[0]}.".split(" ")) + inner + self._sum(["", *last]) - self._heads[""]

    def pieces(self, text: str) -> list[str]:
        """The text cut at its junctions (the spaces themselves dropped)."""
        return text.split(" ") if self._all_junctions(text) else _JUNCTION[self.junctions].split(text)

    def _all_junctions(self, text: str) -> bool:
        """Whether every space is a junction, checked at C speed: the only other whitespace is newlines away
        from spaces, no space is doubled or at an end."""
        return (text.replace("\n", "").isprintable() and "  " not in text and " \n" not in text
                and "\n " not in text and not text.startswith(" ") and not text.endswith(" ")
                and (self.junctions == "unicode" or text.isascii()))

    def _sum(self, pieces: list[str]) -> int:
        """Head count of the first piece plus the tail counts of the others."""
        try:
            return self._heads[pieces[0]] + sum(map(self._tails.__getitem__, pieces[1:]))
        except KeyError:
            self.learn(pieces)
            return self._heads[pieces[0]] + sum(map(self._tails.__getitem__, pieces[1:]))

    def position(self, text: str, at: int) -> int:
        """Index of the first token starting at or after character `at`, special tokens included, as the offsets
        of `tokenizer(text)` give it. Additive when a junction precedes `at`: the tokens before the junction plus
        those of the next piece that start at the space (e.g. a lone ' ' token)."""
        if self.additive and 1 < at < len(text) and self._junction_at(text, at - 1):
            nxt = _JUNCTION[self.junctions].search(text, at)
            piece = text[at : nxt.start() if nxt else len(text)]
            if piece not in self._leads:
                offsets = self.tokenizer(f"{ANCHOR} {piece}", return_offsets_mapping=True)["offset_mapping"]
                self._leads[piece] = sum(1 for s, e in offsets if s == len(ANCHOR) and e > s)
            return self.count(text[: at - 1]) + self._leads[piece]
        enc = self.tokenizer(text, return_offsets_mapping=True)
        starts = [s for s, e in enc["offset_mapping"] if e > s or s > 0]
        specials = len(enc["input_ids"]) - len(starts)  # e.g. BOS, which has an empty offset span
        return specials + next((i for i, s in enumerate(starts) if s >= at), len(starts))

    def _junction_at(self, text: str, i: int) -> bool:
        return _JUNCTION[self.junctions].match(text, i) is not None

    def learn(self, pieces: list[str]) -> None:
        """Cache the head and tail counts of pieces not seen before (one batched tokenizer call)."""
        if pieces[0] not in self._heads:
            self._heads[pieces[0]] = self.exact(pieces[0])
        new = [p for p in dict.fromkeys(pieces[1:]) if p not in self._tails]
        if len(self._tails) + len(new) > _MAX_CACHED:  # random content (uuids, numbers) would grow it forever
            self._tails.clear()
            new = list(dict.fromkeys(pieces[1:]))
        if new:
            lengths = self._lengths([f"{ANCHOR} {p}" for p in new])
            self._tails.update((p, n - self._anchor) for p, n in zip(new, lengths))

    def _lengths(self, texts: list[str]) -> list[int]:
        """Token counts of many short texts: straight from the tokenizers backend (no per-text Python dicts) when
        it holds no padding or truncation state that `tokenizer(...)` would have reset."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        with _no_gc():  # thousands of new objects would trigger full collections of everything loaded
            if backend is None or backend.padding is not None or backend.truncation is not None:
                return [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
            return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=True)]

    def _confirm(self) -> str | None:
        """Check the certificate against whole-text tokenization: every printable ASCII character on one side of a
        junction and each kind of character (letter, digit, every punctuation mark, a few non-ASCII) on the other,
        alone and in words; and the backend's counts against `tokenizer(...)`."""
        chars, words = _PRINTABLE + _SAMPLES, ("x", "7", "", ".")
        pairs = {(a, b) for a in chars for b in _KINDS + _SAMPLES} | {(a, b) for a in _KINDS + _SAMPLES for b in chars}
        texts = [f"{words[ord(a) % 4]}{a} {b}{words[(ord(a) + ord(b)) % 4]}" for a, b in sorted(pairs)]
        split = [p for p in map(_JUNCTION[self.junctions].split, texts) if len(p) == 2]  # NFKC: only ASCII ones
        heads = list(dict.fromkeys(p[0] for p in split))
        self._heads.update(zip(heads, self._lengths(heads)))
        self.learn([ANCHOR, *(p[1] for p in split)])
        texts = [" ".join(p) for p in split]
        want = self._lengths(texts)
        if [self.exact(t) for t in texts[:: len(texts) // 50]] != want[:: len(texts) // 50]:
            return "the tokenizer's backend counts differ from tokenizer(...)"
        for pieces, n in zip(split, want):
            if self._heads[pieces[0]] + self._tails[pieces[1]] != n:
                self._heads.clear()
                self._tails.clear()
                return f"the junction in {' '.join(pieces)!r} changes the tokenization"
        return None


_COUNTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (size, TokenCounter)


def counter(tokenizer: Any) -> TokenCounter:
    """The tokenizer's counter, kept as long as the tokenizer lives."""
    return per_tokenizer(_COUNTERS, tokenizer, TokenCounter)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of `text` as the model reads it (special tokens included), additively when certified."""
    return counter(tokenizer).count(text)


def refusal(tokenizer: Any) -> tuple[str | None, str]:
    """(why the tokenizer cannot be counted additively over junctions or None, which junctions are safe)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "not a fast (tokenizers) tokenizer", "ascii"
    spec = _spec(backend)
    normalizers = {k.get("type") for k in _flatten(spec["normalizer"], "normalizers")}
    return _refusal(spec, backend), "ascii" if normalizers & _ASCII_ONLY else "unicode"


def _spec(backend: Any) -> dict:
    """The parts of the tokenizer's description that decide additivity, read component by component (parsing
    the whole serialisation of a large vocabulary costs a tenth of a second)."""
    def state(component: Any) -> dict | None:
        return None if component is None else json.loads(component.__getstate__())

    added = [{"content": a.content, "lstrip": a.lstrip, "rstrip": a.rstrip, "single_word": a.single_word}
             for a in backend.get_added_tokens_decoder().values()]
    model = backend.model
    return {"added_tokens": added, "normalizer": state(backend.normalizer), "pre_tokenizer":
            state(backend.pre_tokenizer), "model": {"type": type(model).__name__,
                                                   "dropout": getattr(model, "dropout", None)}}


def _refusal(spec: dict, backend: Any) -> str | None:
    for added in spec["added_tokens"]:
        if added["lstrip"] or added["rstrip"] or added["single_word"] or any(ch.isspace() for ch in added["content"]):
            return f"added token {added['content']!r} depends on the spaces around it"
    reason = _normalizer_refusal(spec["normalizer"])
    if reason is not None:
        return reason
    if spec["model"]["dropout"]:
        return "BPE dropout makes tokenization random"
    kinds = _flatten(spec["pre_tokenizer"], "pretokenizers")
    if all(k.get("type") == "Metaspace" and not k.get("split", True) for k in kinds):
        return _vocabulary_refusal(spec, backend, marked=bool(kinds))
    splits = False
    for kind in kinds:
        reason, split = _pre_tokenizer(kind)
        if reason is not None:
            return reason
        splits = splits or split
    return None if splits else "the pre-tokenizer does not split at spaces"


def _flatten(node: dict | None, key: str) -> list[dict]:
    if node is None:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node[key] for leaf in _flatten(child, key)]
    return [node]


def _normalizer_refusal(node: dict | None) -> str | None:
    for kind in _flatten(node, "normalizers"):
        name = kind.get("type")
        if name == "Replace" and kind.get("pattern", {}).get("String") == " " and not kind["content"].isspace():
            continue  # SentencePiece's ' ' -> '▁'
        if name not in _NORMALIZERS:
            return f"normalizer {name} may change text across spaces"
    return None


def _pre_tokenizer(kind: dict) -> tuple[str | None, bool]:
    """(refusal, whether this step splits at every junction)."""
    name = kind.get("type")
    if name == "ByteLevel":
        return None, bool(kind.get("use_regex", True))
    if name == "Metaspace":
        return (None, True) if kind.get("split", True) else ("Metaspace without splitting", False)
    if name in _SPACE_SPLITTERS:
        return None, True
    if name in _REFINERS:
        return None, False
    if name == "Split":
        pattern = kind.get("pattern", {})
        if pattern.get("String") == " " or pattern.get("Regex") in _KNOWN_SPLITS:
            return (None, True) if not kind.get("invert") else ("inverted Split", False)
        return f"unrecognised Split pattern {pattern}", False
    return f"pre-tokenizer {name}", False


def _vocabulary_refusal(spec: dict, backend: Any, marked: bool) -> str | None:
    """The whole text is one pre-token (Llama-2-style '▁' BPE or unigram): additive only if spaces become '▁'
    and no vocabulary entry crosses a word start, so that every segmentation breaks before each '▁' that follows
    another character and the parts are segmented independently."""
    if spec["model"]["type"] not in ("BPE", "Unigram"):
        return "no pre-tokenizer"
    marked = marked or any(k.get("type") == "Replace" for k in _flatten(spec["normalizer"], "normalizers"))
    if not marked:
        return "no pre-tokenizer and spaces are not marked"
    crossing = re.compile(r"[^▁]▁")
    bad = next((p for p in backend.get_vocab(with_added_tokens=False) if crossing.search(p)), None)
    return None if bad is None else f"vocabulary entry {bad!r} crosses a word start"
