"""Text loading, in one place: the natural text that ships with every Python (the offline fallback corpus), essay
folders (haystacks) and JSONL documents (training data, perplexity texts, analysis windows).

Why: the project must train and evaluate with no network and no dataset hub, so its natural text comes from
the interpreter itself (the pydoc topic help and the docstrings of a fixed list of stdlib modules).
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from pathlib import Path

from longrecipe.base import downloads

# A fixed list keeps the corpus identical for a given Python version (walking the stdlib would not).
DOC_MODULES = (
    "argparse", "ast", "asyncio/base_events", "asyncio/events", "asyncio/tasks", "bisect", "calendar", "cmd",
    "codecs", "collections/__init__", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email/message", "enum", "fileinput", "fnmatch", "fractions", "ftplib", "functools",
    "gettext", "glob", "gzip", "heapq", "hmac", "html/parser", "http/client", "http/cookiejar", "imaplib",
    "inspect", "ipaddress", "json/__init__", "json/decoder", "logging/__init__", "mailbox", "mimetypes",
    "multiprocessing/pool", "netrc", "numbers", "optparse", "os", "pathlib", "pdb", "pickle", "pprint",
    "queue", "random", "re/__init__", "sched", "secrets", "selectors", "shlex", "shutil", "smtplib",
    "socket", "socketserver", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "turtle", "typing", "unittest/case", "urllib/parse",
    "urllib/request", "uuid", "warnings", "wave", "weakref", "webbrowser", "zipfile",
)
# Never trained on (by the tiny base model or the demo): the held-out text of "general ability" perplexity.
HELDOUT_MODULES = (
    "bz2", "codeop", "concurrent/futures/_base", "doctest", "email/utils", "filecmp", "getopt", "graphlib",
    "hashlib", "linecache", "locale", "lzma", "modulefinder", "pkgutil", "platform", "plistlib", "pstats", "pyclbr",
    "reprlib", "runpy", "shelve", "ssl", "symtable", "sysconfig", "trace", "tracemalloc", "xml/dom/minidom",
    "zipapp", "zipimport",
)

# The filler sentence of passkey, RULER's noise haystack and the tiny base's training rows (one definition).
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

_WS = re.compile(r"\s+")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _pydoc_paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        out.extend(p for p in topics[key].split("\n\n") if p.strip())
    return out


def _docstring_paragraphs(modules: tuple[str, ...] = DOC_MODULES) -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for name in modules:
        path = lib / f"{name}.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.extend(p for p in doc.split("\n\n") if p.strip())
    return out


@functools.lru_cache(maxsize=1)
def paragraphs() -> tuple[str, ...]:
    """Prose paragraphs (code blocks and grammar rules dropped), whitespace normalised, in a fixed order."""
    return _prose(_pydoc_paragraphs() + _docstring_paragraphs())


@functools.lru_cache(maxsize=1)
def heldout_paragraphs() -> tuple[str, ...]:
    """Prose of modules outside the training corpus (HELDOUT_MODULES), minus any paragraph the corpus holds."""
    seen = set(paragraphs())
    return tuple(p for p in _prose(_docstring_paragraphs(HELDOUT_MODULES)) if p not in seen)


def _prose(raw: list[str]) -> tuple[str, ...]:
    keep = []
    for p in raw:
        lines = p.splitlines()
        if any(line.startswith("   ") or line.startswith(">>>") for line in lines):
            continue  # code samples and grammar productions are not prose
        text = _WS.sub(" ", p).strip()
        if len(text) >= 40 and text[-1] in ".:;!?)" and sum(c.isalpha() for c in text) > 0.7 * len(text):
            keep.append(text)
    return tuple(keep)


@functools.lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """Prose split into sentences at '. ', '! ', '? ' before a capital letter."""
    out = []
    for p in paragraphs():
        out.extend(s.strip() for s in _SENT.split(p) if len(s.strip()) >= 20)
    return tuple(out)


@functools.lru_cache(maxsize=1)
def words() -> tuple[str, ...]:
    """Distinct lower-case alphabetic words of 3-10 letters, sorted: a deterministic vocabulary for fillers."""
    found = set()
    for p in paragraphs():
        found.update(w for w in re.findall(r"\b[a-z]{3,10}\b", p))
    return tuple(sorted(found))


def text() -> str:
    """The whole corpus as one string, paragraphs separated by blank lines."""
    return "\n\n".join(paragraphs())


class SourceError(ValueError):
    """A missing or unusable source (essays, QA file, word lists): one line that says how to provide it."""


@functools.lru_cache(maxsize=8)
def essay_text(essay_dir: str | None) -> str:
    """All essays concatenated (sorted file names, no separator), as RULER and NIAH read them.
    None = the built-in fallback: natural text shipped with Python."""
    if essay_dir is None:
        return text()
    path = Path(downloads.named(essay_dir, "paul_graham_essays"))  # the bare name: the cached copy
    files = sorted(path.glob("*.txt")) if path.is_dir() else []
    if not files:
        raise SourceError(f"no essays (*.txt) in {essay_dir}: pass a folder of Paul Graham essays "
                          f"(`longrecipe data pull paul_graham_essays` caches gkamradt/LLMTest_NeedleInAHaystack's "
                          f"49; then --essay-dir paul_graham_essays), or none for the built-in Python-docs fallback")
    return "".join(f.read_text(encoding="utf-8") for f in files)


def load_documents(source: str, text_field: str = "text") -> list[tuple[str, list[tuple[int, int]] | None]]:
    """(text, loss spans or None) per document of 'python' (the built-in text), a JSONL file, Parquet files or a
    hub dataset (longrecipe.base.sources). A row may name the character spans that are training targets in
    `loss_spans` ([[start, end], ...], like a completion-only mask); without it every token is. A span of four,
    [start, end, needle_start, needle_end], is a target only in training rows that also hold its needle (the
    characters it is retrieved from) before it. One-line errors name the file and line."""
    if source == "python":
        return [(text(), None)]
    from longrecipe.base.sources import records  # local: sources reads rows through document_fields below

    docs = [(r.text, r.spans) for r in records(source, text_field)]
    if not docs:
        raise ValueError(f"{source}: no documents")
    return docs


def document_fields(row: dict, where: str, text_field: str = "text") -> tuple[str, list[tuple[int, int]] | None]:
    """(text, loss spans or None) of one JSONL document object; `where` (file:line) leads the one-line errors."""
    if not isinstance(row.get(text_field), str):
        raise ValueError(f"{where}: expected an object with a string field {text_field!r}")
    spans = row.get("loss_spans")
    if spans is not None and not (isinstance(spans, list) and all(
            isinstance(x, list) and len(x) in (2, 4) and all(isinstance(v, int) for v in x) for x in spans)):
        raise ValueError(f"{where}: loss_spans must be a list of [start, end] (or [start, end, needle_start, "
                         f"needle_end]) character offsets")
    return row[text_field], [tuple(x) for x in spans] if spans is not None else None


def load_texts(source: str, text_field: str = "text") -> list[str]:
    return [t for t, _ in load_documents(source, text_field)]
