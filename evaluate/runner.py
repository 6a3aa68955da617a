"""`longrecipe eval`: prepare (cached task files) -> predict (append-only JSONL, resumable) -> score -> results.json.

Why append-only JSONL per (suite, task, length): a killed run loses at most the sample being written; on resume
every finished sample is read back and never recomputed. results.json is written once, atomically, at the end:
a failed run never replaces the results of a previous one.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from longrecipe import models
from longrecipe.config import ConfigError, bounded, check
from longrecipe.schema import ModelInfo, Results, ScoreRow, append_jsonl, read_jsonl, run_info

SUITES = ("ruler", "niah", "passkey", "ppl", "longbench", "longbench_e", "longbench_v2", "general")


@dataclass(frozen=True)
class EvalConfig:
    model: str
    out: str
    suites: tuple[str, ...] = ("ruler",)
    lengths: tuple[int, ...] = (256,)
    backend: str = "hf"
    allow_extrapolation: bool = False
    samples: int = bounded(20, ge=1)
    seed: int = bounded(42, ge=0)
    essay_dir: str | None = None
    qa_squad: str | None = None
    qa_hotpot: str | None = None
    ruler_tasks: tuple[str, ...] = ()
    niah_depths: int = bounded(11, ge=1)
    batch_size: int = bounded(8, ge=1)
    general_tasks: tuple[str, ...] = ("longrecipe_cloze", "longrecipe_passkey_short", "longrecipe_heldout")
    general_max_length: int | None = bounded(None, ge=1)  # lm-eval's window for general tasks (default: the model's)
    general_limit: int | None = bounded(None, ge=1)  # lm-eval's limit: the first N documents of each general task
    ppl_file: str | None = None  # JSONL {"text"} for the ppl suite (default: held-out Python prose)
    allow_code_execution: bool = False
    max_model_len: int | None = bounded(None, ge=1)
    device: str | None = None
    longbench_dir: str | None = None
    longbench_datasets: tuple[str, ...] = ()
    longbench_max_length: int | None = bounded(None, ge=1)
    longbench_cot: bool = False
    chat_template: bool = False
    # model options: hf (dtype, attention kernel, layers spread over GPUs) and vLLM (tensor parallel, memory)
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    device_map: str | None = None
    trust_remote_code: bool = False
    tensor_parallel_size: int = bounded(1, ge=1)
    gpu_memory_utilization: float = bounded(0.85, gt=0, le=1)
    # --backend openai: the endpoint, the served model's tokenizer (a local directory), request handling
    base_url: str | None = None
    tokenizer: str | None = None
    api_key_env: str | None = None  # the NAME of the environment variable holding the key, never the key
    concurrency: int = bounded(8, ge=1)
    request_timeout: float = bounded(600.0, gt=0)
    retries: int = bounded(5, ge=0)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """The samples of one (suite, task, length) and where their predictions go."""

    suite: str
    task: str
    length: int | None
    samples: list[dict]
    version: int | str = 1
    then: Any = None  # makes the next job from this one's predictions (LongBench v2 chain of thought)

    def path(self, out: Path) -> Path:
        return out / "predictions" / self.suite / self.task / f"{self.length or 'na'}.jsonl"


# Settings that may grow between two runs into one --out (results then hold the union), and settings that change
# no sample and no score; every other setting, and the content of every data file, is the run's identity.
ADDITIVE = ("suites", "lengths", "ruler_tasks", "general_tasks", "longbench_datasets")
NEUTRAL = ("out", "batch_size", "device", "max_model_len", "allow_extrapolation", "allow_code_execution", "base_url",
           "api_key_env", "concurrency", "request_timeout", "retries", "attn_implementation", "device_map",
           "tensor_parallel_size", "gpu_memory_utilization")
DTYPES = ("auto", "bfloat16", "float16", "float32")
BACKENDS = ("hf", "vllm", "openai")
DATA_PATHS = ("essay_dir", "qa_squad", "qa_hotpot", "ppl_file", "longbench_dir")


def validate(cfg: EvalConfig) -> tuple[Path, int]:
    """One-line errors for bad input before anything is computed or written."""
    check(cfg)
    if not cfg.suites or not cfg.lengths:
        raise ConfigError("give at least one suite and one length")
    if min(cfg.lengths) < 1:
        raise ConfigError(f"lengths must be positive, got {list(cfg.lengths)}")
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; choose from {', '.join(BACKENDS)}")
    if cfg.backend == "openai":
        if not cfg.base_url or not cfg.tokenizer:
            raise ConfigError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1) and --tokenizer DIR "
                              "(the served model's tokenizer, to build and fit prompts); --model is the served name")
        local = [s for s in cfg.suites if s in ("ppl", "general")]
        if local:
            raise ConfigError(f"suite {local[0]} scores log-likelihoods of a local model: not with --backend openai")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {cfg.dtype!r}; choose from {', '.join(DTYPES)}")
    if cfg.tensor_parallel_size > 1:
        import torch

        gpus = torch.cuda.device_count()
        if cfg.backend != "vllm" or cfg.tensor_parallel_size > gpus:
            raise ConfigError(f"--tensor-parallel-size {cfg.tensor_parallel_size} needs --backend vllm and as many "
                              f"GPUs ({gpus} visible)")
    path = models.resolve(cfg.tokenizer if cfg.backend == "openai" else cfg.model)
    for suite in cfg.suites:
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
    if "general" in cfg.suites:
        from longrecipe.evaluate.general import check_code_tasks

        check_code_tasks(cfg)
    if any(s.startswith("longbench") for s in cfg.suites) and not cfg.longbench_dir:
        raise ValueError("the LongBench suites need --longbench-dir: a folder of JSONL files in LongBench's record "
                         "format ({dataset}.jsonl, {dataset}_e.jsonl, longbench_v2.jsonl)")
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


def run_identity(cfg: EvalConfig, model_dir: Path) -> dict[str, Any]:
    """What decides "resume into this --out, or refuse": every setting that changes a sample or a score, the
    model's config and weight files (names and sizes), and the content of every data file the run reads."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ADDITIVE + NEUTRAL}
    files = {f.name: f.stat().st_size for f in sorted(model_dir.iterdir()) if f.is_file()
             and (f.suffix == ".safetensors" or f.name.startswith("tokenizer") or f.name == "config.json")}
    data = {k: _content_hash(settings[k]) for k in DATA_PATHS if settings.get(k)}
    return json.loads(json.dumps({"settings": settings, "model_files": files,
                                  "model_config": _content_hash(str(model_dir / "config.json")), "data": data}))


def _identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two run identities, in words ('samples', 'the data in longbench_dir', ...)."""
    names = {"settings": "{}", "model_files": "model file {}", "data": "the data in {}"}
    diff = []
    for part, fmt in names.items():
        a, b = old.get(part) or {}, new.get(part) or {}
        diff += [fmt.format(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("model_config") != new.get("model_config"):
        diff.append("the model's config.json")
    return diff


def _check_same_run(out: Path, cfg: EvalConfig, identity: dict[str, Any]) -> None:
    saved = out / "eval_config.json"
    if not saved.exists():
        return
    try:
        old = json.loads(saved.read_text())
    except ValueError:
        raise ConfigError(f"{saved} is unreadable; use a new --out") from None
    if "identity" not in old:  # written by an older version: compare the settings it recorded
        keys = ("model", "backend", "samples", "seed", "essay_dir", "qa_squad", "qa_hotpot", "niah_depths")
        diff = [k for k in keys if old.get(k) != asdict(cfg).get(k)]
    else:
        diff = _identity_diff(old["identity"], identity)
    if diff:
        raise ConfigError(f"{out} holds predictions of a different run ({diff[0]} differs); use a new --out")


def prepare(cfg: EvalConfig, tokenizer: Any, log=print, window: int = 0) -> list[Job]:
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
                                             qa.get(task), chat_template=cfg.chat_template, cache_dir=cache)
                except ValueError as err:
                    if "cannot hold" not in str(err):
                        raise
                    log(f"note: RULER {task} does not fit {length} tokens with this tokenizer; skipped")
                    continue
                jobs.append(Job("ruler", task, length, samples, ruler.TASK_VERSION))
    if "niah" in cfg.suites:
        depths = niah.default_depths(0, 100, cfg.niah_depths)
        for length in cfg.lengths:
            samples = niah.generate(tokenizer, [length], depths, cfg.essay_dir, chat_template=cfg.chat_template,
                                    answer_prefix=("" if cfg.chat_template else " ") + "The best thing to do in San "
                                    "Francisco is")
            jobs.append(Job("niah", "needle", length, samples, niah.TASK_VERSION))
    jobs += prepare_longbench(cfg, tokenizer, window or max(cfg.lengths))
    if "passkey" in cfg.suites:
        for length in cfg.lengths:
            jobs.append(Job("passkey", "passkey", length, passkey.generate(
                tokenizer, length, cfg.samples, cfg.seed, chat_template=cfg.chat_template), passkey.TASK_VERSION))
    return jobs


def _longbench_files(cfg: EvalConfig, suite: str) -> list[tuple[str, Path]]:
    from longrecipe.tasks import longbench as lb

    if not cfg.longbench_dir:
        raise ValueError(f"--suite {suite} needs --longbench-dir: a folder of JSONL files in LongBench's record format")
    folder = Path(cfg.longbench_dir)
    if suite == "longbench_v2":
        return [("longbench_v2", folder / "longbench_v2.jsonl")]
    names = cfg.longbench_datasets or (lb.DATASETS if suite == "longbench" else lb.DATASETS_E)
    suffix = "" if suite == "longbench" else "_e"
    files = [(d, folder / f"{d}{suffix}.jsonl") for d in names]
    if cfg.longbench_datasets:
        return files  # named datasets must exist: lb.load gives the one-line error
    present = [(d, f) for d, f in files if f.is_file()]
    if not present:
        raise FileNotFoundError(f"no {suite} files ({{dataset}}{suffix}.jsonl) in {folder}")
    return present


def prepare_longbench(cfg: EvalConfig, tokenizer: Any, window: int) -> list[Job]:
    """LongBench prompts middle-truncated to the model's window minus the dataset's tokens to generate."""
    from longrecipe.tasks import longbench as lb
    from longrecipe.tasks import longbench_v2 as v2

    jobs = []
    for suite in ("longbench", "longbench_e"):
        if suite not in cfg.suites:
            continue
        for dataset, path in _longbench_files(cfg, suite):
            if dataset not in lb.DATASETS:
                raise ValueError(f"unknown LongBench dataset {dataset!r}; choose from {', '.join(lb.DATASETS)}")
            new = lb.MAX_NEW_TOKENS[dataset]
            limit = cfg.longbench_max_length or max(16, window - new)
            samples = [{"index": i, "input": lb.build_prompt(dataset, r, tokenizer, limit, cfg.chat_template),
                        "answer_prefix": "", "outputs": list(r["answers"]), "all_classes": r.get("all_classes"),
                        "length": r["length"], "max_new_tokens": new} for i, r in enumerate(lb.load(path))]
            jobs.append(Job(suite, dataset, None, samples, lb.TASK_VERSION))
    if "longbench_v2" in cfg.suites:
        (_, path), = _longbench_files(cfg, "longbench_v2")
        records = _load_v2(path)
        limit = cfg.longbench_max_length or max(16, window - (v2.COT_NEW_TOKENS if cfg.longbench_cot else
                                                                v2.MAX_NEW_TOKENS))

        def sample(i: int, r: dict, reasoning: str | None = None) -> dict:
            return {"index": i, "input": v2.build_prompt(r, tokenizer, limit, cfg.longbench_cot, reasoning),
                    "answer_prefix": "", "outputs": [r["answer"]], "difficulty": r["difficulty"],
                    "length": r["length"], "max_new_tokens": v2.COT_NEW_TOKENS if cfg.longbench_cot and reasoning
                    is None else v2.MAX_NEW_TOKENS}

        if cfg.longbench_cot:
            def answer_pass(preds: list[dict]) -> Job:
                return Job("longbench_v2", "answer", None, [sample(i, r, p["prediction"]) for i, (r, p) in
                                                            enumerate(zip(records, preds))], v2.TASK_VERSION)

            jobs.append(Job("longbench_v2", "cot", None, [sample(i, r) for i, r in enumerate(records)],
                            v2.TASK_VERSION, then=answer_pass))
        else:
            jobs.append(Job("longbench_v2", "answer", None, [sample(i, r) for i, r in enumerate(records)],
                            v2.TASK_VERSION))
    return jobs


def _load_v2(path: Path) -> list[dict]:
    from longrecipe.tasks import longbench_v2 as v2
    from longrecipe.tasks.longbench import checked_records

    if not path.is_file():
        raise FileNotFoundError(f"LongBench v2 data not found: {path} (JSONL of the original records)")
    return checked_records(path, v2.FIELDS)


def _prompt_sha(sample: dict) -> str:
    return hashlib.sha1((sample["input"] + sample.get("answer_prefix", "")).encode()).hexdigest()


def _read_done(path: Path, samples: list[dict] | None = None) -> dict[int, dict]:
    """Finished predictions; a last line cut by a kill (no newline) is dropped, a malformed full line is an error,
    and so is a prediction made from another prompt or for other references than this run's sample."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw[: raw.rfind(b"\n") + 1]
        path.write_bytes(keep)
    done = {int(r["index"]): r for r in read_jsonl(path)}
    for s in samples or ():
        row = done.get(int(s["index"]))
        if row is not None and (row.get("prompt_sha1", _prompt_sha(s)) != _prompt_sha(s)
                                or row.get("outputs") != s["outputs"]):
            raise ConfigError(f"{path}: sample {s['index']} was predicted from another prompt or for other "
                              f"references than this run's; use a new --out")
    return done


def predict(job: Job, backend: Any, out: Path, batch_size: int, log=print) -> list[dict]:
    from longrecipe.evaluate.backends import Request

    path = job.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_done(path, job.samples)
    todo = [s for s in job.samples if int(s["index"]) not in done]
    t0, new_tokens = time.time(), 0
    # a backend that hands back each request as it completes (a server) gets the whole job at once
    step = (len(todo) or 1) if hasattr(backend, "completed") else max(batch_size, getattr(backend, "chunk", 0))
    bar = tqdm(total=len(todo), desc=f"{job.suite}/{job.task}@{job.length}", disable=not todo, leave=False)
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        reqs = [Request(s["input"] + s.get("answer_prefix", ""), int(s.get("max_new_tokens", 32))) for s in batch]
        finished = backend.completed(reqs) if hasattr(backend, "completed") else enumerate(backend.generate(reqs))
        for i, pred in finished:
            s = batch[i]
            row = {"index": s["index"], "prediction": pred, "outputs": s["outputs"], "length": s.get("length"),
                   "depth": s.get("depth"), "answer_position": s.get("answer_position"), "prompt_sha1": _prompt_sha(s)}
            for key in ("all_classes", "difficulty"):
                if key in s:
                    row[key] = s[key]
            append_jsonl(path, row)
            done[int(s["index"])] = row
            new_tokens += len(backend.tokenizer(pred, add_special_tokens=False)["input_ids"])
            bar.update(1)
    bar.close()
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
        nulls = sum(not ruler.postprocess(t) for t in texts)  # RULER's Nulls: empty predictions
        return [ScoreRow("ruler", job.task, ruler.METRIC[job.task], value, job.version, job.length, None, len(preds),
                         nulls)]
    if job.suite == "niah":
        rows = []
        for p in preds:
            rows.append(ScoreRow("niah", job.task, "substring", niah.score(p["prediction"], p["outputs"]),
                                 job.version, job.length, float(p["depth"]), 1))
        return rows
    if job.suite.startswith("longbench"):
        return score_longbench(job, preds)
    values = [100 * passkey.score(t, r[0]) for t, r in zip(texts, refs)]
    return [ScoreRow("passkey", "passkey", "exact_match", sum(values) / len(values), job.version, job.length, None,
                     len(values))]


def score_longbench(job: Job, preds: list[dict]) -> list[ScoreRow]:
    from longrecipe.tasks import longbench as lb
    from longrecipe.tasks import longbench_v2 as v2

    if job.suite == "longbench_v2":
        if job.task == "cot":
            return []
        records = [{"answer": p["outputs"][0], "difficulty": p["difficulty"], "length": p["length"]} for p in preds]
        acc = v2.summary(records, [v2.extract_answer(p["prediction"]) for p in preds])
        nulls = sum(v2.extract_answer(p["prediction"]) is None for p in preds)
        return [ScoreRow("longbench_v2", group, "accuracy", value, job.version, None, None, len(preds), nulls)
                for group, value in acc.items()]
    metric = lb.METRIC_NAMES[job.task]
    if job.suite == "longbench":
        value = lb.dataset_score(job.task, [p["prediction"] for p in preds], [p["outputs"] for p in preds],
                                 preds[0].get("all_classes") if preds else None)
        return [ScoreRow("longbench", job.task, metric, value, job.version, None, None, len(preds))]
    rows = []
    for lo, name in lb.BUCKETS:  # LongBench-E: context_length holds the bucket's lower bound (record length units)
        part = [p for p in preds if lb.bucket(int(p["length"])) == name]
        if part:
            value = lb.dataset_score(job.task, [p["prediction"] for p in part], [p["outputs"] for p in part],
                                     part[0].get("all_classes"))
            rows.append(ScoreRow("longbench_e", job.task, metric, value, job.version, lo, None, len(part)))
    return rows


def longbench_summary(rows: list[ScoreRow]) -> list[ScoreRow]:
    """Category averages per language and the leaderboard average (mean of categories, Code shared)."""
    from longrecipe.tasks import longbench as lb

    scores = {r.task: r.value for r in rows if r.suite == "longbench" and r.task in lb.DATASETS}
    out = []
    for lang, cats in lb.category_averages(scores).items():
        for cat, value in cats.items():
            task = "average" if cat == "Avg" else cat
            out.append(ScoreRow("longbench", task, f"avg_{lang}", round(value, 2), 1, None, None, len(scores)))
    return out


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
    """Validate everything and prepare every job before the first write; then predict, score, and write
    results.json holding this run's rows and the earlier rows of the same run identity it did not recompute."""
    path, window = validate(cfg)
    out = Path(cfg.out)
    identity = run_identity(cfg, path)
    _check_same_run(out, cfg, identity)
    previous = _previous_rows(out)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    if cfg.chat_template:
        from longrecipe.tasks import chat

        chat.wrapper(tokenizer)  # a tokenizer without a template is a one-line error before anything is written
    jobs = prepare(cfg, tokenizer, log, window)
    for job in jobs:  # stale predictions are refused before anything is written
        _read_done(job.path(out), job.samples)
    backend = _backend(cfg, path) if jobs else None  # an unreachable server or a wrong model: before any write
    from longrecipe.io import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval_config.json", {**asdict(cfg), "identity": identity})
    rows: list[ScoreRow] = []
    if backend is not None:
        queue = list(jobs)
        while queue:
            job = queue.pop(0)
            preds = predict(job, backend, out, cfg.batch_size, log)
            rows += score(job, preds)
            if job.then is not None:
                queue.insert(0, job.then(preds))
        del backend
    if "ppl" in cfg.suites:
        from longrecipe.evaluate.perplexity import run_perplexity

        rows += run_perplexity(path, cfg.lengths, device=cfg.device, text_file=cfg.ppl_file, log=log)
    if "general" in cfg.suites:
        from longrecipe.evaluate.general import run_general

        rows += run_general(cfg, path, out, log)
    rows = union_rows(previous, rows)
    conf = json.loads((path / "config.json").read_text())
    results = Results(run=run_info(command or " ".join(sys.argv), asdict(cfg), cfg.seed),
                      model=ModelInfo(cfg.model, conf.get("rope_parameters"), conf.get("max_position_embeddings")),
                      backend=cfg.backend, scores=tuple(rows))
    results.save(out / "results.json")
    return out / "results.json"


def _backend(cfg: EvalConfig, path: Path) -> Any:
    from longrecipe.evaluate.backends import make_backend

    if cfg.backend == "openai":
        from longrecipe.evaluate.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg.base_url, cfg.model, str(path), cfg.api_key_env, cfg.concurrency,
                             cfg.request_timeout, cfg.retries)
    max_len = cfg.max_model_len or max(max(cfg.lengths), 1)
    return make_backend(cfg.backend, str(path), device=cfg.device, batch_size=cfg.batch_size, max_model_len=max_len,
                        dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                        attn_implementation=cfg.attn_implementation, device_map=cfg.device_map,
                        tensor_parallel_size=cfg.tensor_parallel_size,
                        gpu_memory_utilization=cfg.gpu_memory_utilization)


def _previous_rows(out: Path) -> list[ScoreRow]:
    return list(Results.load(out / "results.json").scores) if (out / "results.json").exists() else []


def _derived(row: ScoreRow) -> bool:
    """Summary rows computed from other rows (recomputed over the union, never carried over)."""
    return (row.suite == "ruler" and row.task in ("average", "summary")) or (
        row.suite == "longbench" and row.metric.startswith("avg_"))


def union_rows(previous: list[ScoreRow], new: list[ScoreRow]) -> list[ScoreRow]:
    """This run's rows, then the earlier rows it did not recompute (other lengths, suites or tasks), then the
    summaries over all of them: re-running into an --out never leaves fewer rows than before."""
    key = lambda r: (r.suite, r.task, r.context_length, r.depth, r.metric)  # noqa: E731
    fresh = [r for r in new if not _derived(r)]
    seen = {key(r) for r in fresh}
    rows = fresh + [r for r in previous if not _derived(r) and key(r) not in seen]
    return rows + ruler_summary(rows) + longbench_summary(rows)
