"""lm-eval 0.4.13's `ruler` tasks offline: its two downloads replaced by local files, nothing else changed.

Why: its essay haystack is `datasets.load_dataset("baber/paul_graham_essays")` (a hub download) and its NIAH module
calls `nltk.download("punkt_tab")` at import (~14 s, then fails here); pointing the first at the same local essays
that our RULER reads, and its sentence splitter at ours (only ever faster for it), lets every non-QA task run.
Call `patch(essay_dir)` before importing anything from `lm_eval.tasks.ruler`.
"""

from __future__ import annotations

from pathlib import Path

# lm-eval's task names for RULER's 11 non-QA tasks (ours on the left)
RULER_TASKS = {t: ("ruler_" + t if t in ("vt", "cwe", "fwe") else t) for t in (
    "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
    "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe")}


def patch(essay_dir: str) -> None:
    import datasets
    import nltk

    nltk.download = lambda *a, **k: False
    real_load = datasets.load_dataset

    def load_dataset(path, *a, **k):
        if path == "baber/paul_graham_essays":
            texts = [p.read_text(encoding="utf-8") for p in sorted(Path(essay_dir).glob("*.txt"))]
            return datasets.Dataset.from_dict({"text": texts})
        return real_load(path, *a, **k)

    datasets.load_dataset = load_dataset
    from lm_eval.tasks.ruler import prepare_niah

    from longrecipe.tasks.ruler import common

    prepare_niah.cached_sent_tokenize = common.split_sentences


def scores_by_length(results: dict, task: str) -> dict[int, float]:
    """lm-eval's per-length RULER metrics ('4096,none'), in percent; its -1 marks a length without samples."""
    out = {}
    for key, value in results[task].items():
        name = key.split(",")[0]
        if name.isdigit() and float(value) != -1:
            out[int(name)] = 100 * float(value)
    return out
