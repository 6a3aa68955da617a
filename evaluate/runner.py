"""`longrecipe eval`: prepare (cached task files) -> predict (append-only JSONL, resumable) -> score -> results.json.

Why append-only JSONL per (suite, task, length): a killed run loses at most the sample being written; on resume
every finished sample is read back and never recomputed. results.json is written once, atomically, at the end:
a failed run never replaces the results of a previous one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from longrecipe import models
from longrecipe.schema import ModelInfo, Results, SchemaError, ScoreRow, append_jsonl, read_jsonl, run_info

SUITES = ("ruler", "niah", "passkey", "general")
PLANNED = {"longbench": "LongBench is not implemented yet", "longbench_e": "LongBench-E is not implemented yet",
           "longbench_v2": "LongBench v2 is not implemented yet"}


@dataclass(frozen=True)
class EvalConfig:
    model: str
    out: str
    suites: tuple[str, ...] = ("ruler",)
    lengths: tuple[int, ...] = (256,)
    backend: str = "hf"
    allow_extrapolation: bool = False
    samples: int = 20
    seed: int = 42
    essay_dir: str | None = None
    qa_squad: str | None = None
    qa_hotpot: str | None = None
    ruler_tasks: tuple[str, ...] = ()
    niah_depths: int = 11
    batch_size: int = 8
    general_tasks: tuple[str, ...] = ("longrecipe_cloze",)
    allow_code_execution: bool = False
    max_model_len: int | None = None
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """The samples of one (suite, task, length) and where their predictions go."""

    suite: str
    task: str
    length: int | None
    samples: list[dict]
    version: int | str = 1

    def path(self, out: Path) -> Path:
        return out / "predictions" / self.suite / self.task / f"{self.length or 'na'}.jsonl"


def validate(cfg: EvalConfig) -> tuple[Path, int]:
    """One-line errors for bad input before anything is computed or written."""
    path = models.resolve(cfg.model)
    for suite in cfg.suites:
        if suite in PLANNED:
            raise ValueError(f"--suite {suite}: {PLANNED[suite]}; available: {', '.join(SUITES)}")
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    conf = json.loads((path / "config.json").read_text())
    window = int(conf.get("max_position_embeddings", 0))
    too_long = [n for n in cfg.lengths if n > window]
    if too_long and not cfg.allow_extrapolation:
        raise ValueError(f"length {max(too_long)} is above the model's max_position_embeddings ({window}); pass "
                         f"--allow-extrapolation to measure beyond the window")
    from longrecipe.tasks import ruler

    bad = [t for t in cfg.ruler_tasks if t not in ruler.TASKS]
    if bad:
        raise ValueError(f"unknown RULER task {bad[0]!r}; choose from {', '.join(ruler.TASKS)}")
    return path, window


def _check_same_run(out: Path, cfg: EvalConfig) -> None:
    saved = out / "eval_config.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        keys = ("model", "backend", "samples", "seed", "essay_dir", "qa_squad", "qa_hotpot", "niah_depths")
        diff = [k for k in keys if old.get(k) != asdict(cfg).get(k)]
        if diff:
            raise ValueError(f"{out} holds predictions of a different run ({diff[0]} differs); use a new --out")


def prepare(cfg: EvalConfig, tokenizer: Any, log=print) -> list[Job]:
    from longrecipe.tasks import niah, passkey, ruler
    from longrecipe.tasks.ruler import default_cache_dir

    jobs: list[Job] = []
    cache = default_cache_dir()
    qa = {"qa_1": cfg.qa_squad, "qa_2": cfg.qa_hotpot}
    if "ruler" in cfg.suites:
        tasks = list(cfg.ruler_tasks or ruler.TASKS)
        missing = [t for t in tasks if t in qa and qa[t] is None]
        if missing and not cfg.ruler_tasks:
            log(f"note: RULER {', '.join(missing)} skipped: pass --qa-squad / --qa-hotpot (SQuAD v2 / HotpotQA JSON)")
            tasks = [t for t in tasks if t not in missing]
        for length in cfg.lengths:
            for task in tasks:
                try:
                    samples = ruler.generate(task, tokenizer, length, cfg.samples, cfg.seed, cfg.essay_dir,
                                             qa.get(task), cache_dir=cache)
                except ValueError as err:
                    if "cannot hold" not in str(err):
                        raise
                    log(f"note: RULER {task} does not fit {length} tokens with this tokenizer; skipped")
                    continue
                jobs.append(Job("ruler", task, length, samples, ruler.TASK_VERSION))
    if "niah" in cfg.suites:
        depths = niah.default_depths(0, 100, cfg.niah_depths)
        for length in cfg.lengths:
            samples = niah.generate(tokenizer, [length], depths, cfg.essay_dir,
                                    answer_prefix=" The best thing to do in San Francisco is")
            jobs.append(Job("niah", "needle", length, samples, niah.TASK_VERSION))
    if "passkey" in cfg.suites:
        for length in cfg.lengths:
            jobs.append(Job("passkey", "passkey", length, passkey.generate(tokenizer, length, cfg.samples, cfg.seed),
                            passkey.TASK_VERSION))
    return jobs


def _read_done(path: Path) -> dict[int, dict]:
    """Finished predictions; a last line cut by a kill (no newline) is dropped, a malformed full line is an error."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw[: raw.rfind(b"\n") + 1]
        path.write_bytes(keep)
    return {int(r["index"]): r for r in read_jsonl(path)}


def predict(job: Job, backend: Any, out: Path, batch_size: int, log=print) -> list[dict]:
    from longrecipe.evaluate.backends import Request

    path = job.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_done(path)
    todo = [s for s in job.samples if int(s["index"]) not in done]
    t0, new_tokens = time.time(), 0
    for start in tqdm(range(0, len(todo), batch_size), desc=f"{job.suite}/{job.task}@{job.length}",
                      disable=not todo, leave=False):
        batch = todo[start : start + batch_size]
        reqs = [Request(s["input"] + s.get("answer_prefix", ""), int(s.get("max_new_tokens", 32))) for s in batch]
        for s, pred in zip(batch, backend.generate(reqs)):
            row = {"index": s["index"], "prediction": pred, "outputs": s["outputs"], "length": s.get("length"),
                   "depth": s.get("depth"), "answer_position": s.get("answer_position")}
            append_jsonl(path, row)
            done[int(s["index"])] = row
            new_tokens += len(backend.tokenizer(pred, add_special_tokens=False)["input_ids"])
    if todo:
        dt = time.time() - t0
        log(f"{job.suite}/{job.task}@{job.length}: {len(todo)} samples in {dt:.1f}s "
            f"({new_tokens / max(dt, 1e-9):.1f} generated tokens/s)")
    return [done[int(s["index"])] for s in job.samples]


def score(job: Job, preds: list[dict]) -> list[ScoreRow]:
    from longrecipe.tasks import niah, passkey, ruler

    texts = [p["prediction"] for p in preds]
    refs = [p["outputs"] for p in preds]
    if job.suite == "ruler":
        value = ruler.score(job.task, texts, refs)
        return [ScoreRow("ruler", job.task, ruler.METRIC[job.task], value, job.version, job.length, None, len(preds))]
    if job.suite == "niah":
        rows = []
        for p in preds:
            rows.append(ScoreRow("niah", job.task, "substring", niah.score(p["prediction"], p["outputs"]),
                                 job.version, job.length, float(p["depth"]), 1))
        return rows
    values = [100 * passkey.score(t, r[0]) for t, r in zip(texts, refs)]
    return [ScoreRow("passkey", "passkey", "exact_match", sum(values) / len(values), job.version, job.length, None,
                     len(values))]


def ruler_summary(rows: list[ScoreRow]) -> list[ScoreRow]:
    """Per-length means over the RULER tasks and the summary over lengths (avg, wAvg, effective length)."""
    from longrecipe.tasks import ruler

    by_len: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.suite == "ruler" and r.context_length is not None:
            by_len.setdefault(r.context_length, {})[r.task] = r.value
    if not by_len:
        return []
    agg = ruler.aggregate(by_len)
    out = [ScoreRow("ruler", "average", "mean_over_tasks", round(v, 2), 1, n, None, len(by_len[n]))
           for n, v in agg["per_length"].items()]
    for metric in ("avg", "wavg_inc", "wavg_dec"):
        out.append(ScoreRow("ruler", "summary", metric, round(agg[metric], 2), 1, None, None, len(by_len)))
    eff = agg["effective_length"]
    out.append(ScoreRow("ruler", "summary", "effective_length", float(eff or 0), 1, None, None, len(by_len)))
    return out


def run_eval(cfg: EvalConfig, command: str = "", log=print) -> Path:
    path, _window = validate(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out, cfg)
    from longrecipe.io import write_json

    write_json(out / "eval_config.json", asdict(cfg))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    jobs = prepare(cfg, tokenizer, log)
    rows: list[ScoreRow] = []
    if jobs:
        from longrecipe.evaluate.backends import make_backend

        max_len = cfg.max_model_len or max(max(cfg.lengths), 1)
        backend = make_backend(cfg.backend, str(path), device=cfg.device, batch_size=cfg.batch_size,
                               max_model_len=max_len)
        for job in jobs:
            rows += score(job, predict(job, backend, out, cfg.batch_size, log))
        del backend
    rows += ruler_summary(rows)
    if "general" in cfg.suites:
        from longrecipe.evaluate.general import run_general

        rows += run_general(cfg, path, out, log)
    conf = json.loads((path / "config.json").read_text())
    results = Results(run=run_info(command or " ".join(sys.argv), asdict(cfg), cfg.seed),
                      model=ModelInfo(cfg.model, conf.get("rope_parameters"), conf.get("max_position_embeddings")),
                      backend=cfg.backend, scores=tuple(rows))
    results.save(out / "results.json")
    return out / "results.json"


__all__ = ["EvalConfig", "run_eval", "SchemaError", "os"]
