"""RULER QA: a question over many documents, one (SQuAD v2) or several (HotpotQA) of them holding the answer."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from longrecipe.tasks.ruler import common as C

TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any other "
            "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
            "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
ANSWER_PREFIX = " Answer:"
DOCUMENT_PROMPT = "Document {i}:\n{document}"
TOKENS_TO_GENERATE = 32


def _load(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise C.SourceError(f"QA file not found: {path} (pass qa_file=: a SQuAD v2 JSON for qa_1, a HotpotQA JSON "
                            f"for qa_2)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise C.SourceError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None


@functools.lru_cache(maxsize=4)
def read_squad(path: str) -> tuple[list[dict], list[str]]:
    """Answerable questions; each with its paragraph and the other paragraphs of the same article."""
    data = _load(path)
    try:
        docs = sorted({p["context"] for d in data["data"] for p in d["paragraphs"]})
        index = {c: i for i, c in enumerate(docs)}
        qas = []
        for d in data["data"]:
            more = [index[p["context"]] for p in d["paragraphs"]]
            for p in d["paragraphs"]:
                for qa in p["qas"]:
                    if not qa.get("is_impossible", False):
                        own = index[p["context"]]
                        qas.append({"query": qa["question"], "outputs": [a["text"] for a in qa["answers"]],
                                    "context": [own], "more_context": [i for i in more if i != own]})
    except (KeyError, TypeError) as err:
        raise C.SourceError(f"{path}: not a SQuAD v2 file (missing {err})") from None
    return qas, docs


@functools.lru_cache(maxsize=4)
def read_hotpotqa(path: str) -> tuple[list[dict], list[str]]:
    data = _load(path)
    try:
        docs = sorted({f"{t}\n{''.join(p)}" for d in data for t, p in d["context"]})
        index = {c: i for i, c in enumerate(docs)}
        qas = [{"query": d["question"], "outputs": [d["answer"]],
                "context": [index[f"{t}\n{''.join(p)}"] for t, p in d["context"]]} for d in data]
    except (KeyError, TypeError, ValueError) as err:
        raise C.SourceError(f"{path}: not a HotpotQA file ({err})") from None
    return qas, docs


def _documents(qa: dict, docs: list[str], n: int, rng: np.random.Generator) -> list[str]:
    own, more = qa["context"], qa.get("more_context", [])
    if n < len(docs):
        if n - len(own) > len(more):
            taken = set(own + more)
            rest = [i for i in range(len(docs)) if i not in taken]
            extra = rng.choice(len(rest), size=min(len(rest), max(0, n - len(own) - len(more))), replace=False)
            chosen = own + more + [rest[i] for i in extra]
        else:
            chosen = own + [more[i] for i in rng.choice(len(more), size=max(0, n - len(own)), replace=False)]
        picked = [docs[i] for i in chosen]
    else:
        picked = (docs * (n // len(docs) + 1))[:n]
    rng.shuffle(picked)
    return picked


def generate(args: dict[str, Any], tokenizer: Any, length: int, num_samples: int, seed: int, task: str,
             essay_dir: str | None = None, wrap=lambda s: s, qa_file: str | None = None) -> list[dict]:
    if qa_file is None:
        raise C.SourceError(f"{task} needs a local QA file: qa_file= a SQuAD v2 JSON (qa_1) or a HotpotQA JSON "
                            f"(qa_2); generate() downloads nothing (the ruler suite uses --qa-squad / --qa-hotpot, "
                            f"else the copy `longrecipe data pull squad hotpotqa` caches)")
    qas, docs = (read_squad if args["dataset"] == "squad" else read_hotpotqa)(str(qa_file))
    if not qas:
        raise C.SourceError(f"{qa_file}: no answerable questions")
    out, hint = [], None
    for index in range(num_samples):
        qa = qas[index % len(qas)]
        rng = C.sample_rng(seed, task, length, index)
        doc_seed = int(rng.integers(2**63))

        def build(n: int) -> str:
            picked = _documents(qa, docs, n, np.random.default_rng([doc_seed, n]))
            context = "\n\n".join(DOCUMENT_PROMPT.format(i=i + 1, document=d) for i, d in enumerate(picked))
            return wrap(TEMPLATE.format(context=context, query=qa["query"])) + ANSWER_PREFIX

        unit = C.count_tokens(tokenizer, docs[qa["context"][0]])
        prompt, hint = C.fit(build, tokenizer, length - TOKENS_TO_GENERATE, unit, lo=len(qa["context"]), hint=hint)
        out.append(C.record(tokenizer, prompt, ANSWER_PREFIX, qa["outputs"], index, TOKENS_TO_GENERATE))
    return out
