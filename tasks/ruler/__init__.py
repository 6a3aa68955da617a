"""RULER (NVIDIA/RULER): the 13 synthetic tasks, generated offline from a tokenizer, and their scoring.

Public API: TASKS, generate(task, tokenizer, length, num_samples, seed, essay_dir=None, qa_file=None),
score(task, predictions, references) -> 0-100, aggregate(scores_by_length) -> avg / wavg_inc / wavg_dec /
effective_length. Task arguments are RULER's scripts/synthetic.yaml; templates, answer prefixes and tokens to
generate are its data/synthetic/constants.py, verbatim. Deviations are listed in common.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from longrecipe.tasks import chat, counting
from longrecipe.tasks.ruler import common, cwe, fwe, niah, qa, vt

TASK_VERSION = 1
THRESHOLD = 85.6  # Llama-2-7B at 4k: RULER's bar for the effective length


def _niah(haystack: str, k: str, v: str, nk: int = 1, nv: int = 1, nq: int = 1) -> dict[str, Any]:
    return {"task": "niah", "args": {"type_haystack": haystack, "type_needle_k": k, "type_needle_v": v,
                                     "num_needle_k": nk, "num_needle_v": nv, "num_needle_q": nq}}


CONFIGS: dict[str, dict[str, Any]] = {
    "niah_single_1": _niah("noise", "words", "numbers"),
    "niah_single_2": _niah("essay", "words", "numbers"),
    "niah_single_3": _niah("essay", "words", "uuids"),
    "niah_multikey_1": _niah("essay", "words", "numbers", nk=4),
    "niah_multikey_2": _niah("needle", "words", "numbers"),
    "niah_multikey_3": _niah("needle", "uuids", "uuids"),
    "niah_multivalue": _niah("essay", "words", "numbers", nv=4),
    "niah_multiquery": _niah("essay", "words", "numbers", nq=4),
    "vt": {"task": "variable_tracking", "args": {"type_haystack": "noise", "num_chains": 1, "num_hops": 4}},
    "cwe": {"task": "common_words_extraction", "args": {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10}},
    "fwe": {"task": "freq_words_extraction", "args": {"alpha": 2.0}},
    "qa_1": {"task": "qa", "args": {"dataset": "squad"}},
    "qa_2": {"task": "qa", "args": {"dataset": "hotpotqa"}},
}
TASKS: tuple[str, ...] = tuple(CONFIGS)
MODULES = {"niah": niah, "variable_tracking": vt, "common_words_extraction": cwe, "freq_words_extraction": fwe,
           "qa": qa}
TOKENS_TO_GENERATE = {name: MODULES[c["task"]].TOKENS_TO_GENERATE for name, c in CONFIGS.items()}
METRIC = {name: ("string_match_part" if c["task"] == "qa" else "string_match_all") for name, c in CONFIGS.items()}


def _tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        from longrecipe import models

        path = models.resolve(tokenizer) if str(tokenizer) in models.ALIASES else tokenizer
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return tokenizer


_TOKENIZER_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (size, hash)


def tokenizer_hash(tokenizer: Any) -> str:
    """Identity of a tokenizer for the cache: its full serialisation when fast, else its vocabulary.
    Memoised per tokenizer object (serialising a large vocabulary costs milliseconds per call, which dominated a
    cached re-run)."""
    return counting.per_tokenizer(_TOKENIZER_HASHES, tokenizer, _tokenizer_hash)


def _tokenizer_hash(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_hash(path: str | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def cache_key(task: str, tokenizer: Any, length: int, num_samples: int, seed: int, essay_dir: str | None,
              qa_file: str | None, chat_template: bool) -> str:
    parts = {"task": task, "version": TASK_VERSION, "tokenizer": tokenizer_hash(tokenizer), "length": length,
             "n": num_samples, "seed": seed, "chat": chat_template, "words": common.wonderwords_version()}
    if CONFIGS[task]["args"].get("type_haystack") == "essay":
        parts["essays"] = common.source_hash(essay_dir)
    if CONFIGS[task]["task"] == "qa":
        parts["qa"] = _file_hash(qa_file)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("LONGRECIPE_CACHE", Path.home() / ".cache" / "longrecipe")) / "ruler"


def generate(task: str, tokenizer: Any, length: int, num_samples: int, seed: int = 42,
             essay_dir: str | None = None, qa_file: str | None = None, *, chat_template: bool = False,
             cache_dir: str | Path | None = None) -> list[dict]:
    """Samples of one RULER task whose prompt (answer prefix included) + tokens to generate fit `length` tokens.

    Each dict: index, input (without the answer prefix), answer_prefix, outputs (references), length (prompt +
    tokens to generate), prompt_tokens, max_new_tokens, answer_position (token index of the first answer in
    the input, when it is in one place) and depth. Cached by (task, tokenizer, length, n, seed, sources) when
    `cache_dir` is given."""
    if task not in CONFIGS:
        raise ValueError(f"unknown RULER task {task!r}; choose from {', '.join(TASKS)}")
    if num_samples < 1 or length < 1:
        raise ValueError("length and num_samples must be >= 1")
    tok = _tokenizer(tokenizer)
    essay_dir = None if essay_dir is None else str(essay_dir)
    qa_file = None if qa_file is None else str(qa_file)
    path = None
    if cache_dir is not None:
        key = cache_key(task, tok, length, num_samples, seed, essay_dir, qa_file, chat_template)
        path = Path(cache_dir) / f"{task}-{length}-{key}.jsonl"
        if path.is_file():
            from longrecipe.schema import read_jsonl

            return read_jsonl(path)
    wrap = chat.wrapper(tok) if chat_template else (lambda s: s)
    cfg = CONFIGS[task]
    module = MODULES[cfg["task"]]
    kwargs = {"qa_file": qa_file} if cfg["task"] == "qa" else {}
    samples = module.generate(cfg["args"], tok, length, num_samples, seed, task, essay_dir, wrap, **kwargs)
    for s in samples:
        s["task"] = task
    if path is not None:
        from longrecipe.io import write_text

        write_text(path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    return samples


_CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess(prediction: str) -> str:
    """RULER's postprocess_pred: strip, control characters to newlines, strip."""
    return _CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over samples of the fraction of references found (case-insensitive substring), x100, 2 decimals."""
    per = [sum(r.lower() in p.lower() for r in refs) / len(refs) for p, refs in zip(predictions, references)]
    return round(sum(per) / len(per) * 100, 2)


def string_match_part(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over samples of 1 if any reference is found (case-insensitive substring), x100, 2 decimals."""
    per = [max(float(r.lower() in p.lower()) for r in refs) for p, refs in zip(predictions, references)]
    return round(sum(per) / len(per) * 100, 2)


def score(task: str, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """The task's RULER metric (0-100) after RULER's prediction post-processing."""
    if task not in CONFIGS:
        raise ValueError(f"unknown RULER task {task!r}")
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    preds = [postprocess(p) for p in predictions]
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    fn = string_match_part if METRIC[task] == "string_match_part" else string_match_all
    return fn(preds, refs)


def aggregate(scores_by_length: Mapping[int, float | Mapping[str, float]]) -> dict[str, Any]:
    """RULER's summary over lengths. Values: the per-length score, or {task: score} (averaged over tasks).

    avg: mean over lengths; wavg_inc / wavg_dec: weights 1..n / n..1 over ascending lengths, normalised;
    effective_length: the longest length scoring > 85.6 (None if none does)."""
    if not scores_by_length:
        raise ValueError("no scores to aggregate")
    lengths = sorted(scores_by_length)
    per = {n: (sum(v.values()) / len(v) if isinstance(v, Mapping) else float(v))
           for n, v in ((n, scores_by_length[n]) for n in lengths)}
    vals = [per[n] for n in lengths]
    k = len(vals)
    inc = sum((i + 1) * v for i, v in enumerate(vals)) / (k * (k + 1) / 2)
    dec = sum((k - i) * v for i, v in enumerate(vals)) / (k * (k + 1) / 2)
    passing = [n for n in lengths if per[n] > THRESHOLD]
    return {"per_length": per, "avg": sum(vals) / k, "wavg_inc": inc, "wavg_dec": dec,
            "effective_length": max(passing) if passing else None}
