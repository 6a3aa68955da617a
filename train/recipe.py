"""`longrecipe train`: one stage (extension or replay) from a YAML config, resumable, single process or torchrun.

Layout of `out`:  config.yaml (resolved), train_log.jsonl (one line per step), train_eval.jsonl (train.eval: scores
at step 0 and every N steps), checkpoints/step-N/ (see
train/checkpoint.py: sharded under FSDP2, resumable at any world size; manifest.json written last), model/ (the
final Hugging Face directory).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch as st
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from longrecipe.base import config as C
from longrecipe.base import interrupt, model_dirs, runlock
from longrecipe.base.identity import changed
from longrecipe.base.io import atomic_dir, write_text
from longrecipe.base.schema import append_jsonl, drop_torn_line, read_jsonl
from longrecipe.train import data as D
from longrecipe.train import rope, ulysses
from longrecipe.train import store as S
from longrecipe.train.checkpoint import (  # noqa: F401  (MANIFEST, _file_entry: re-exported)
    DCP_METADATA,
    MANIFEST,
    Checkpointer,
    _file_entry,
    agreed_checkpoint,
    checkpoint_problem,
    full_states,
    latest_checkpoint,
    load_sharded,
    restore,
    save_checkpoint,
)
from longrecipe.train.config import RunConfig
from longrecipe.train.flops import training_flops
from longrecipe.train.loop import IGNORE, _ce_sum, auto_chunk, compiled_ce, loss_and_count, shifted_targets
from longrecipe.train.plan import (
    PlanError,
    batch_plan,
    checkpointed_layers,
    device_capacity,
    plan_for,
    sequence_problem,
)
from longrecipe.train.schedule import optimizer_step, warmup_cosine


class Dist:
    """torch.distributed when launched by torchrun (gloo on CPU, nccl on CUDA); a no-op otherwise."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{self.local}" if torch.cuda.is_available() else "cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            wait = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo", **wait)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    @property
    def main(self) -> bool:
        return self.rank == 0


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    return C.load(RunConfig, path, overrides).validate()


def load_training_tokenizer(cfg: RunConfig):
    """The tokenizer of the model a run trains (base/tokenization.load_tokenizer loads any folder's)."""
    return AutoTokenizer.from_pretrained(model_dirs.resolve(cfg.model.path),
                                         trust_remote_code=cfg.model.trust_remote_code)


def load_training_model(cfg: RunConfig, device: torch.device, tokenizer: Any = None):
    """The model a run trains, with the RoPE of the extension target written into its config before the model is
    built (base/inference.load_model loads a folder as it is, for inference)."""
    path = model_dirs.resolve(cfg.model.path)
    trc = cfg.model.trust_remote_code
    mconf = AutoConfig.from_pretrained(path, trust_remote_code=trc)
    if cfg.train.stage == "extension":
        rope.apply(mconf, cfg.rope.method, cfg.train.target_length, cfg.rope.factor)
    model = AutoModelForCausalLM.from_pretrained(
        path, config=mconf, dtype=torch.float32, use_safetensors=True, trust_remote_code=trc,
        attn_implementation=attn_implementation(cfg.model.attn_implementation, device),
    ).to(device)
    apply_checkpointing(model, cfg)
    return model, tokenizer if tokenizer is not None else load_training_tokenizer(cfg)


def apply_checkpointing(model: Any, cfg: RunConfig) -> list[bool]:
    """Activation checkpointing per decoder layer (full: every layer recomputed in backward; selective: every
    k-th; none); returns the per-layer choice."""
    layers = getattr(model, model.base_model_prefix).layers
    chosen = checkpointed_layers(cfg, len(layers))  # the rule the memory plan counts with
    if not any(chosen):
        return chosen
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer, on in zip(layers, chosen):
        layer.gradient_checkpointing = on  # transformers' GradientCheckpointingLayer reads it at every call
    return chosen


PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}  # dense bf16 FLOP/s (specs)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _rss_mb() -> float:
    """The process's resident set now (Linux; 0 elsewhere): the baseline a CPU run's training memory is above."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def check_plan(cfg: RunConfig, dist: Dist) -> None:
    """Refuse, before any weight is loaded, a run whose estimated memory per process exceeds what the device has
    (`longrecipe train --plan` prints the whole estimate; LONGRECIPE_SKIP_PLAN=1 trains anyway)."""
    if os.environ.get("LONGRECIPE_SKIP_PLAN") == "1":
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    try:
        plan = plan_for(cfg, dist.world, dist.device.type, device_capacity(dist.device.type, local))
    except PlanError:
        raise
    except ValueError:  # no shape to plan from: loading the model says what is missing
        return
    if plan.fits is False:
        raise ValueError(f"this run does not fit: {plan.summary()}; reduce train.micro_batch_size or "
                         f"train.train_length, set train.checkpointing=full, use more processes (fsdp2), or set "
                         f"LONGRECIPE_SKIP_PLAN=1 to try anyway")


def _peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated CUDA memory on a GPU; on CPU this process image's peak resident set (VmHWM,
    not getrusage's ru_maxrss, which keeps the parent's resident set across fork + exec: a run started from a large
    process would report that process's size)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def attn_implementation(name: str, device: torch.device) -> str:
    """Resolve `auto`: flash-attn 2 where it can run (CUDA + the package), else PyTorch SDPA."""
    if name != "auto":
        return name
    return "flash_attention_2" if device.type == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"


def lr_lambda(cfg: RunConfig):
    t = cfg.train
    return warmup_cosine(t.warmup, t.steps, t.schedule, t.min_lr_ratio)


def _check_same_config(out: Path, cfg: RunConfig) -> None:
    """Resume only the same training: `out` may differ (a moved run folder still resumes), and so may `eval` (what
    `run` evaluates afterwards moves no weight)."""
    saved = out / "config.yaml"
    if not saved.exists():
        return
    diff = changed(_with_defaults(C.read_yaml(saved)), C.to_dict(cfg), ignore=("out", "eval"))
    if diff:
        raise ValueError(f"{out} holds a run with a different config ({diff[0]} differs); resume with the same "
                         f"config or use a new out")


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config.yaml with today's defaults for keys added since it was written (a run from before
    train.eval existed still resumes); one that no longer builds is compared as written."""
    try:
        return C.to_dict(C.build(RunConfig, saved))
    except C.ConfigError:
        return saved


def _truncate_log(path: Path, step: int) -> float:
    """On resume, drop log lines past the checkpoint (they will be recomputed identically); returns the elapsed
    seconds logged at the checkpoint, so that elapsed time (the run's wall-time cost) continues from there."""
    if not path.exists():
        return 0.0
    drop_torn_line(path)  # a kill during an append: the torn last line goes (it is recomputed)
    keep = [r for r in read_jsonl(path) if r["step"] <= step]
    write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
    return float(keep[-1].get("elapsed_s", 0.0)) if keep else 0.0


Evaluator = Callable[[Any], list[dict[str, Any]]]  # the current model -> score rows (train.eval)


def run_training(config_path: str | None, overrides: list[str] | tuple[str, ...] = (),
                 evaluation: Callable[[RunConfig], Evaluator] | None = None) -> Path:
    """Train one stage; returns the final model directory. Resumes from the latest checkpoint in `out`.

    `evaluation` (given by the commands: evaluation code lives beside training, not in it) checks the config's
    `train.eval` section at once, builds its samples and returns the evaluator."""
    cfg = load_config(config_path, overrides)
    if cfg.train.eval.every and evaluation is None:
        raise C.ConfigError("train.eval: run it through `longrecipe train` or `longrecipe run` (they evaluate)")
    t = cfg.train
    # train.eval: the first process evaluates while the others wait at a barrier (NCCL's default: 10 minutes)
    dist = Dist(EVAL_WAIT_S if t.eval.every else None)
    if t.sequence_parallel > 1:
        _check_sequence_parallel(cfg, dist.world)
    replicas = dist.world // t.sequence_parallel  # data-parallel groups of sequence_parallel processes each
    micro, accum = batch_plan(t, replicas)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(cfg.out)
    if dist.main:
        _check_same_config(out, cfg)
    final = out / "model"
    if (final / "config.json").is_file():  # written atomically at the very end: the run is complete
        if dist.main:
            print(f"note: {out} already holds the finished run ({final}); nothing to do (use a new out to train "
                  f"again)", file=sys.stderr)
        return final
    model_dirs.resolve(cfg.model.path)  # a missing model is one line before anything is written
    evaluator = evaluation(cfg) if t.eval.every and evaluation else None  # bad eval keys: one line, too
    _validate_data(cfg, out)  # bad data fails before anything is written or loaded
    check_plan(cfg, dist)  # and a run that cannot fit, before anything is written
    with runlock.hold(out) if dist.main else contextlib.nullcontext():  # one owner per run directory
        return _train(cfg, dist, out, micro, accum, replicas, evaluator)


def _train(cfg: RunConfig, dist: Dist, out: Path, micro: int, accum: int, replicas: int,
           evaluator: Evaluator | None = None) -> Path:
    """The training run proper, in a directory this process owns; a signal stops it at a step boundary with that
    step saved (see base/interrupt.py), so the same command continues exactly."""
    t, final = cfg.train, out / "model"
    if dist.main:
        C.save(cfg, out / "config.yaml")
    tok = load_training_tokenizer(cfg)
    builder = D.build(tok, cfg.data, t, _token_store(cfg, out, tok, dist))
    base_mb = _rss_mb() if dist.device.type == "cpu" else 0.0  # the data's host memory is not the plan's
    torch.manual_seed(t.seed)
    model, tok = load_training_model(cfg, dist.device, tok)
    sp = ulysses.groups(t.sequence_parallel)
    attn_saved = ulysses.enable(model) if sp is not None else None
    replica = dist.rank // t.sequence_parallel  # the processes of one group train the same rows
    bf16 = t.precision == "bf16" or (t.precision == "auto" and dist.device.type == "cuda")
    if t.compile:
        for layer in getattr(model, model.base_model_prefix).layers:
            layer.compile()
    chunk = t.loss_chunk or auto_chunk(model.config.vocab_size)
    net: torch.nn.Module = LossModule(model, chunk, compiled_ce() if t.compile else _ce_sum, sp)
    fsdp = dist.world > 1 and t.distributed == "fsdp2"
    if fsdp:  # before the optimizer: sharding replaces the parameters
        _fully_shard(model, net, bf16)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, betas=(0.9, 0.95),
                            fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    start, before = 0, 0.0
    if (ckpt := agreed_checkpoint(out, dist)) is not None:
        start = restore(ckpt, model, opt, sched, dist, net, fsdp)
        if dist.main:
            before = _truncate_log(out / "train_log.jsonl", start)
            _truncate_log(out / EVAL_LOG, start)
    elif dist.main:  # no checkpoint: the run starts at step 0, so do its logs
        (out / "train_log.jsonl").unlink(missing_ok=True)
        (out / EVAL_LOG).unlink(missing_ok=True)
    if evaluator is not None and start == 0:  # the curve starts at the model training starts from
        if dist.main:
            _evaluate(evaluator, model, out, 0, 0, 0.0, bf16)
        dist.barrier()
    if dist.world > 1 and not fsdp:  # the loss module goes through DDP's forward so its gradient hooks are armed
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.local] if dist.device.type == "cuda" else None)
    t0 = time.time() - before
    bar = tqdm(range(start, t.steps), initial=start, total=t.steps, desc=f"train {t.method}", disable=not dist.main)
    board = _tensorboard(out) if t.tensorboard and dist.main else None
    peak = _peak_flops(dist.device)
    saver = Checkpointer(out, dist, t.async_save)
    step_flops = training_flops(model.config.to_dict(), t.train_length, t.batch_size)
    with interrupt.deferred():  # a signal waits for the end of its step, which is then saved (below)
        for step in bar:
            step_t0 = time.time()
            model.train()
            rows = [_rows(builder, t, step, m, replica, micro, replicas) for m in range(accum)]
            # every token of the step weighs the same, whatever micro-batch or process it lands in (the processes of
            # a sequence-parallel group all count their group's full rows)
            counted = float(sum(int((shifted_targets(b) != IGNORE).sum()) for b in rows))
            targets = dist.sum(counted) / t.sequence_parallel
            # a step whose rows hold no target (every answer's needle cut away) has a zero loss and zero gradients
            count = max(targets, 1.0)
            total = 0.0
            for m, batch in enumerate(rows):
                batch = {k: v.to(dist.device) for k, v in batch.items()}
                last = m == len(rows) - 1
                if fsdp:
                    net.set_requires_gradient_sync(last)
                ctx = net.no_sync() if dist.world > 1 and not fsdp and not last else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss_sum = net(batch)
                    (loss_sum * dist.world / count).backward()  # DDP and FSDP average over processes: undo it
                total += float(loss_sum.detach())
            gnorm = optimizer_step(model, opt, sched, t.max_grad_norm)
            gnorm = float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)  # FSDP2: a DTensor
            loss = dist.sum(total) / count
            if dist.main and (step + 1) % t.log_every == 0:
                dt = max(time.time() - step_t0, 1e-9)
                row = {"step": step + 1, "loss": round(loss, 6), "lr": sched.get_last_lr()[0],
                       "grad_norm": round(gnorm, 6), "tokens": int(targets), "elapsed_s": round(time.time() - t0, 3),
                       "tokens_per_s": round(targets / dt, 1), "peak_mem_mb": round(_peak_memory_mb(dist.device), 1)}
                row["train_mem_mb"] = round(row["peak_mem_mb"] - base_mb, 1)  # what `--plan` estimates
                if peak:  # model FLOPs utilisation: counted training FLOPs of the step over the GPUs' bf16 peak
                    row["mfu"] = round(step_flops / dt / (peak * dist.world), 4)
                append_jsonl(out / "train_log.jsonl", row)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if board is not None:
                    board.add_scalar("train/loss", loss, step + 1)
                    board.add_scalar("train/lr", sched.get_last_lr()[0], step + 1)
                    board.add_scalar("train/tokens_per_s", row["tokens_per_s"], step + 1)
                    board.add_scalar("train/peak_mem_mb", row["peak_mem_mb"], step + 1)
            if evaluator is not None and ((step + 1) % t.eval.every == 0 or step + 1 == t.steps):
                if dist.main:  # the first process evaluates
                    _evaluate(evaluator, model, out, step + 1, (step + 1) * t.batch_size * t.train_length,
                              (step + 1) * step_flops, bf16)
                dist.barrier()  # the other processes wait for the first one's evaluation
            saved = t.save_every and (step + 1) % t.save_every == 0 and step + 1 < t.steps
            if saved:
                saver.save(step + 1, model, opt, sched, net if fsdp else None)
            interrupt.progress(f"at step {step + 1} of {t.steps}")
            stop = interrupt.requested() is not None
            if dist.world > 1:  # every rank stops at the same step (a scheduler may signal only some)
                stop = dist.sum(float(stop)) > 0
            if stop and step + 1 < t.steps:
                if not saved:
                    saver.save(step + 1, model, opt, sched, net if fsdp else None)
                saver.wait()
                interrupt.progress(f"at step {step + 1} of {t.steps} (saved)")
                raise interrupt.Interrupted(interrupt.requested() or signal.SIGTERM)
        saver.wait()  # the last save in flight is on disk before the run is declared done
        weights = full_states(model, net, opt)[0] if fsdp else None
        if attn_saved is not None:  # the saved model runs its usual attention
            model.set_attn_implementation(attn_saved)
        if dist.main:
            with atomic_dir(final) as tmp:
                model.save_pretrained(tmp, safe_serialization=True, state_dict=weights)
                tok.save_pretrained(tmp)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    dist.barrier()
    return final


EVAL_LOG = "train_eval.jsonl"
EVAL_WAIT_S = 6 * 3600  # how long the other processes wait for one train.eval evaluation


def _evaluate(evaluator: Evaluator, model: Any, out: Path, step: int, tokens: int, flops: float, bf16: bool) -> None:
    """One evaluation of the current weights (train.eval), in eval mode and without gradients, appended to
    train_eval.jsonl with how far training got: `tokens` = steps x batch x train_length (what the FLOPs count)."""
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            rows = evaluator(model)
    finally:
        model.train()
    # one evaluation, one write: whole, or torn at its end
    append_jsonl(out / EVAL_LOG, *({"step": step, "tokens": tokens, "flops": flops, **r} for r in rows))


def _check_sequence_parallel(cfg: RunConfig, world: int) -> None:
    """Heads and processes checked against the model's own config before anything is written or loaded."""
    if world == 1:
        raise ValueError(f"train.sequence_parallel={cfg.train.sequence_parallel} needs that many processes per "
                         f"group: launch with torchrun --nproc_per_node N (a multiple of it)")
    shape = AutoConfig.from_pretrained(model_dirs.resolve(cfg.model.path),
                                       trust_remote_code=cfg.model.trust_remote_code).to_dict()
    if (problem := sequence_problem(shape, cfg.train, world)) is not None:
        raise ValueError(problem)


def _store_path(cfg: RunConfig, out: Path) -> Path | None:
    """Where an extension run's documents are read from: the token store `data.source` names, or the run's own
    store of its JSONL, Parquet or hub source (built once, resumable); None for the built-in text and for replay."""
    source = cfg.data.source
    if source != "python" and S.is_store(source):
        return Path(source)
    if source == "python" or cfg.train.stage == "replay":
        return None
    return out / "token_store"


def _validate_data(cfg: RunConfig, out: Path) -> None:
    path = _store_path(cfg, out)
    if path is None:
        if cfg.data.source != "python":
            D.load_texts(cfg.data)
    elif path == Path(cfg.data.source):
        S.TokenStore(path)  # complete and readable (its tokenizer is checked once the tokenizer is loaded)
    elif not S.is_complete(path):
        S.validate(cfg.data.source, cfg.data.text_field)


def _token_store(cfg: RunConfig, out: Path, tok: Any, dist: Dist) -> Path | None:
    """The store to read documents from, built by the main process when it is the run's own (others wait)."""
    path = _store_path(cfg, out)
    if path is not None and path != Path(cfg.data.source):
        if dist.main:
            S.build(cfg.data.source, tok, path, cfg.data.text_field)
        dist.barrier()
    return path


def _fully_shard(model, net: torch.nn.Module, bf16: bool) -> None:
    """FSDP2: each decoder layer, then the rest (embeddings, final norm, the tied head, the loss) sharded over
    the processes, so parameters, gradients and AdamW state take 1/N of the memory on each (an 8B model's fp32
    weights and optimizer state, 128 GB, do not fit one GPU as DDP would need). bf16: parameters gathered in
    bf16, gradients reduced in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # local: FSDP2 runs only

    policy = {"param_dtype": torch.bfloat16, "reduce_dtype": torch.float32} if bf16 else {}
    mp = MixedPrecisionPolicy(**policy)
    for layer in getattr(model, model.base_model_prefix).layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(net, mp_policy=mp)


def _rows(builder: D.SampleBuilder, t, step: int, m: int, rank: int, micro: int, world: int) -> dict[str, torch.Tensor]:
    """This rank's rows of forward m of a step: the step's rows g = (m * world + rank) * micro + i, each seeded by
    (seed, step, g), so any number of processes and any micro-batch size see exactly the rows of one process doing
    one forward (and the token-weighted loss is the same)."""
    first = (m * world + rank) * micro
    parts = [builder.batch(t.seed, step, 0, first + i, 1) for i in range(micro)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("train.tensorboard=true needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(out / "tensorboard"))


class LossModule(torch.nn.Module):
    """Wraps the model so that one forward returns the step's summed token loss (what DDP must wrap)."""

    def __init__(self, model: torch.nn.Module, chunk: int, ce: Any = _ce_sum, sp: Any = None):
        super().__init__()
        self.model, self.chunk, self.ce, self.sp = model, chunk, ce, sp

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_and_count(self.model, batch, self.chunk, self.ce, self.sp)[0]


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """`longrecipe export`: a training checkpoint (either format, any world size; or a run folder: its newest
    complete checkpoint) as a Hugging Face directory (safetensors, the run's RoPE, the tokenizer)."""
    ckpt, out = Path(ckpt), Path(out)
    if (ckpt / "checkpoints").is_dir() or (ckpt / "config.yaml").is_file():
        found = latest_checkpoint(ckpt)
        if found is None:
            raise ValueError(f"{ckpt} holds no checkpoint")
        ckpt = found
    if (problem := checkpoint_problem(ckpt)) is not None:
        raise ValueError(f"{ckpt} is not a usable checkpoint: {problem}")
    run_config = ckpt.parent.parent / "config.yaml"
    if not run_config.is_file():
        raise ValueError(f"{run_config} not found: export reads the run's config beside its checkpoints/")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new --out")
    cfg = load_config(str(run_config))
    model, tok = load_training_model(cfg, torch.device("cpu"))
    if (ckpt / DCP_METADATA).is_file():
        load_sharded(ckpt, LossModule(model, 0))
    else:
        st.load_model(model, str(ckpt / "model.safetensors"))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out
