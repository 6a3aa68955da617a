"""General (short-context) tasks through lm-eval 0.4.13, converted into our results schema.

Task names pass through to lm-eval (mmlu, gsm8k, humaneval, ... for users who have their data). Offline, the
project writes two local tasks of its own next to the run and registers them with lm-eval's TaskManager:
`longrecipe_cloze` (multiple choice by log-likelihood: the true ending of a sentence from the Python docs against
three endings of other sentences), `longrecipe_passkey_short` (generation: a passkey at 128 tokens, exact
match) and `longrecipe_heldout` (rolling log-likelihood of prose from stdlib modules that no training here uses:
word and byte perplexity, bits per byte). Code-executing tasks run only with --allow-code-execution.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from longrecipe.base import corpus
from longrecipe.base.io import write_text
from longrecipe.base.schema import RAW_METRICS, ScoreRow
from longrecipe.evaluate.backends import BACKENDS
from longrecipe.tasks import passkey
from longrecipe.tasks.general import LOCAL_TASKS, GeneralOptions

CLOZE_YAML = """task: longrecipe_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
PASSKEY_YAML = """task: longrecipe_passkey_short
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{input}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["."]
  max_gen_toks: 10
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
    regexes_to_ignore: ["\\\\s"]
metadata:
  version: 1.0
"""

HELDOUT_YAML = """task: longrecipe_heldout
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
metadata:
  version: 1.0
"""


def heldout_items(n: int = 40, per_doc: int = 4) -> list[dict]:
    """`n` documents of `per_doc` consecutive held-out paragraphs (text no model here was trained on)."""
    paras = corpus.heldout_paragraphs()
    return [{"text": " ".join(paras[i * per_doc : (i + 1) * per_doc])} for i in range(min(n, len(paras) // per_doc))]


def cloze_items(n: int = 60, seed: int = 0) -> list[dict]:
    """Sentences of >= 10 words: context = the first 60 % of words; choices = its ending and 3 others'."""
    sents = [s for s in corpus.sentences() if 10 <= len(s.split()) <= 30]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(sents), size=4 * n, replace=False)
    items = []
    for i in range(n):
        group = [sents[j].split() for j in picks[4 * i : 4 * i + 4]]
        cut = [int(len(w) * 0.6) for w in group]
        endings = [" " + " ".join(w[c:]) for w, c in zip(group, cut)]
        order = rng.permutation(4)
        items.append({"context": " ".join(group[0][: cut[0]]), "choices": [endings[k] for k in order],
                      "label": int(np.flatnonzero(order == 0)[0])})
    return items


def passkey_items(tokenizer: Any, n: int = 40, seed: int = 7) -> list[dict]:
    return [{"input": s["input"], "answer": " " + s["outputs"][0]} for s in passkey.generate(tokenizer, 128, n, seed)]


def write_local_tasks(folder: Path, tokenizer: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, items, yaml in (("cloze", cloze_items(), CLOZE_YAML),
                              ("passkey_short", passkey_items(tokenizer), PASSKEY_YAML),
                              ("heldout", heldout_items(), HELDOUT_YAML)):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(x) + "\n" for x in items))
        (folder / f"{name}.yaml").write_text(yaml.format(data=json.dumps(str(data.resolve()))))
    return folder


def to_rows(results: dict) -> list[ScoreRow]:
    """lm-eval's results dict -> tidy rows (metric names without lm-eval's ',filter' suffix; fractions x100,
    perplexities as they are)."""
    rows = []
    for task, metrics in results["results"].items():
        n = int(results.get("n-samples", {}).get(task, {}).get("effective", 0))
        version = results.get("versions", {}).get(task, 1)
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            scale = 1.0 if metric in RAW_METRICS else 100.0
            rows.append(ScoreRow("general", task, metric, round(scale * float(value), 4 if scale == 1 else 2),
                                 version, None, None, n))
    return rows


def unsafe_tasks(names: list[str] | tuple[str, ...], task_manager: Any) -> list[str]:
    """The tasks among `names` (and the groups and tags they stand for) that lm-eval's own configs mark
    `unsafe_code` (they execute model-generated code). Reads the YAML configs only: no dataset is loaded."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    index, found, seen = task_manager.task_index, [], set()
    stack = list(names)
    while stack:
        name = stack.pop()
        entry = index.get(name) if isinstance(name, str) else None
        if isinstance(name, dict):  # an inline task config inside a group
            if name.get("unsafe_code"):
                found.append(str(name.get("task")))
            continue
        if entry is None or name in seen:
            continue
        seen.add(name)
        if entry.kind == Kind.TAG:
            stack += sorted(entry.tags)
            continue
        cfg = load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else (entry.cfg or {})
        if entry.kind == Kind.GROUP:
            tasks = cfg.get("task", [])
            stack += tasks if isinstance(tasks, list) else [tasks]
        elif cfg.get("unsafe_code"):
            found.append(name)
    return sorted(set(found))


def lm_eval_tasks(options: GeneralOptions) -> list[str]:
    """The asked tasks that are lm-eval's, not ours. Why it matters: lm-eval's task index (~10k configs, seconds per
    construction on 2 cores) is built only when one is asked for."""
    return [t for t in options.tasks if t not in LOCAL_TASKS]


def check(cfg: Any, options: GeneralOptions) -> None:
    """Refuse, before anything runs, general tasks that execute generated code unless the user allowed it, and a
    served model without lm-eval's API dependencies."""
    missing = [m for m in ("aiohttp", "tenacity") if importlib.util.find_spec(m) is None]
    if not BACKENDS[cfg.backend].local_model and missing:
        raise ValueError(f"the general suite on --backend {cfg.backend} needs {missing[0]} (lm-eval's API models): "
                         f"pip install 'longrecipe[eval]'")
    if options.allow_code_execution:
        return
    try:  # local: lm-eval is an optional dependency (the eval extra)
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError("the general suite needs lm-eval: pip install 'longrecipe[eval]'") from None
    if not (theirs := lm_eval_tasks(options)):  # ours run no code
        return
    unsafe = unsafe_tasks(theirs, TaskManager())
    if unsafe:
        raise ValueError(f"general task {unsafe[0]!r} executes model-generated code (lm-eval marks it unsafe_code): "
                         f"pass --allow-code-execution")


def evaluate(cfg: Any, options: GeneralOptions, model_dir: Path, out: Path, log=print) -> list[ScoreRow]:
    """lm-eval on the run's backend, device and dtype (and the chat template when asked), over `options.tasks`
    (ours written next to the run)."""
    check(cfg, options)
    try:  # local: lm-eval is an optional dependency (the eval extra), and heavy
        import lm_eval
        from lm_eval.loggers import EvaluationTracker
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError("the general suite needs lm-eval: pip install 'longrecipe[eval]'") from None
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code)
    folder = write_local_tasks(out / "general_tasks", tok)
    window = json.loads((model_dir / "config.json").read_text()).get("max_position_embeddings", 2048)
    if options.max_length:  # general ability at a fixed (e.g. the native) length
        window = min(int(window), int(options.max_length))
    from longrecipe.evaluate.config import backend_options

    # the backend's own lm-eval model (hf, vllm, or local-completions on a served endpoint)
    name, model_args = BACKENDS[cfg.backend].cls.lm_eval_model(cfg, backend_options(cfg), model_dir, window, log)
    # built here, not by simple_evaluate, which logs its arguments: the API key travels as a header in memory only
    lm = lm_eval.api.registry.get_model(name).create_from_arg_obj(
        model_args, {"batch_size": cfg.batch_size, "max_batch_size": None, "device": None})
    tracker = EvaluationTracker()  # no output path: it only records the run's settings (the chat template used)
    results = lm_eval.simple_evaluate(
        model=lm, apply_chat_template=cfg.chat_template, evaluation_tracker=tracker,
        tasks=list(options.tasks), task_manager=TaskManager(include_path=str(folder),
                                                            include_defaults=bool(lm_eval_tasks(options))),
        batch_size=cfg.batch_size, confirm_run_unsafe_code=options.allow_code_execution, log_samples=False,
        random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
        limit=options.limit)
    # lm-eval's own results beside ours (its layout, for tools that read it); non-JSON values as strings
    write_text(out / "general_lm_eval_results.json", json.dumps(
        {**{k: results[k] for k in ("results", "versions", "n-shot", "n-samples", "higher_is_better") if k in results},
         "chat_template": tracker.general_config_tracker.chat_template,
         "chat_template_sha": tracker.general_config_tracker.chat_template_sha},
        indent=2, default=str) + "\n")
    rows = to_rows(results)
    log("general: " + ", ".join(f"{r.task}/{r.metric}={r.value}" for r in rows))
    return rows
