"""Training of the tiny base: stage 1 (tokenizer and model from scratch) and stage 2 (grown from stage 1, RULER
formats, resumable, optionally on a GPU within a wall-clock budget). The schedule and the optimizer step are
train/schedule.py's, stage 2's checkpoints train/checkpoint.py's."""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from longrecipe.base.io import atomic_dir, write_json
from longrecipe.base.model_dirs import resolve as resolve_model
from longrecipe.recipes.tinybase.config import TinyBaseConfig, TinyBaseV2Config
from longrecipe.recipes.tinybase.evals import passkey_accuracy, ruler_accuracy
from longrecipe.recipes.tinybase.rows import DocSampler, RulerRows, batches, haystack_dirs
from longrecipe.recipes.tinybase.surgery import build_model, deepen_heads, grow, widen
from longrecipe.recipes.tinybase.tokenizer import train_tokenizer
from longrecipe.train.checkpoint import latest_checkpoint, restore, save_checkpoint
from longrecipe.train.schedule import SCHEDULES, optimizer_step, warmup_cosine

PROGRESS = "progress"  # <out>.stage2/progress/step-N.json: history, fitted steps and seconds of checkpoint step-N


def row_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of each row's mean next-token loss: a passkey row (one answer) weighs as much as a text row."""
    logp = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="none"
    ).view(labels.shape[0], -1)
    valid = (labels[:, 1:] != -100).float()
    return ((logp * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()


def optimizer(model, lr: float, warmup: int, steps: int, schedule: str = "cosine"):
    """AdamW and the schedule both stages use: linear warmup, then cosine from lr to lr/10 (or a constant lr)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} (cosine, constant)")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _schedule(warmup, steps, schedule))


def _schedule(warmup: int, steps: int, schedule: str):
    """The lr multiplier at step s (a function, so that a run whose length is fitted after warmup can swap it):
    train/schedule.py's warmup + cosine down to a tenth of the lr."""
    return warmup_cosine(warmup, steps, schedule, min_lr_ratio=0.1)


def train_step(model, opt, sched, ids: torch.Tensor, labels: torch.Tensor, autocast: bool = False) -> float:
    """One optimizer step on the row-mean loss (gradients clipped at 1); returns the loss. `autocast`: the forward
    in bf16 on CUDA (fp32 weights and optimizer state), as the GPU recipe runs it."""
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = row_mean_loss(model(input_ids=ids).logits.float(), labels)
    loss.backward()
    optimizer_step(model, opt, sched, 1.0)
    return loss.item()


def train_tiny_base(out: str | Path, cfg: TinyBaseConfig = TinyBaseConfig(), eval_every: int = 1000,
                    log=print) -> dict:
    """Train tokenizer and model from scratch, deterministically, and save a Hugging Face directory at `out`."""
    torch.manual_seed(cfg.seed)
    tok = train_tokenizer(cfg.vocab_size)
    model = build_model(tok, cfg)
    sampler = DocSampler(tok, cfg, np.random.default_rng(cfg.seed))
    opt, sched = optimizer(model, cfg.lr, cfg.warmup, cfg.steps)
    history, t0 = [], time.time()
    for step in (bar := tqdm(range(cfg.steps), desc="tiny-base", mininterval=5)):
        batch = sampler.batch()
        loss = train_step(model, opt, sched, batch["input_ids"], batch["labels"])
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            acc = passkey_accuracy(model, tok, cfg.native_length, 50)
            history.append({"step": step + 1, "loss": round(loss, 4), "passkey@1x": acc,
                            "minutes": round((time.time() - t0) / 60, 1)})
            log(json.dumps(history[-1]))
    meta = {"config": asdict(cfg), "history": history, "python": sys.version.split()[0], "torch": torch.__version__,
            "machine": platform.machine(), "train_minutes": round((time.time() - t0) / 60, 1)}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(Path(tmp) / "tiny_base.json", meta)
    return meta



def _fit_steps(cfg: TinyBaseV2Config, done: int, rate: float, spent: float, eval_every: int = 0,
               eval_seconds: float = 0.0) -> int:
    """The step count that ends the run within `cfg.minutes`: `done` steps taken, `rate` training steps per second
    (measured on training steps alone), `spent` seconds gone; the progress checks still to come (`eval_seconds`
    each, every `eval_every` steps) are paid out of the time left and 10 % of it is kept for the final save and
    the noise of the rate. Never more than cfg.steps, never fewer than `done`."""
    left = 0.9 * (cfg.minutes * 60 - spent)
    extra = left * rate
    if eval_every and eval_seconds:  # each further step brings 1/eval_every of a check
        extra = left / (1 / rate + eval_seconds / eval_every)
    return max(done, min(cfg.steps, done + int(extra)))


def _refit(cfg: TinyBaseV2Config, steps: int, done: int, rate: float, spent: float, eval_every: int = 0,
           eval_seconds: float = 0.0) -> int:
    """The step count after a later look at the rate (over every training step so far): the first fit rests on
    ~30 s of steps, and a machine busy with something else then (measured: a 2-minute probe beside a run cut its
    fitted steps from ~2100 to 773) would end the run at a third of its budget. Kept unless off by over 15 %, so
    the cosine schedule is not re-laid for noise."""
    new = _fit_steps(cfg, done, rate, spent, eval_every, eval_seconds)
    return new if abs(new - steps) > 0.15 * steps else steps




class _OneProcess:
    """train/checkpoint.py's view of the processes of a run: here one."""

    main, world = True, 1

    def barrier(self) -> None:
        pass


def _resume(work: Path, model, opt, sched, device: str, log) -> tuple[int, dict] | None:
    """(step, progress) of the newest checkpoint of `work` loaded into model, optimizer and schedule; None when
    there is none. Also reads the one-folder state of earlier versions (state.json, model.safetensors, opt.pt)."""
    ckpt = latest_checkpoint(work, log)
    if ckpt is not None:
        step = restore(ckpt, model, opt, sched, _OneProcess(), None)
        return step, json.loads((work / PROGRESS / f"step-{step:08d}.json").read_text())
    if not (work / "state.json").is_file():
        return None
    state = json.loads((work / "state.json").read_text())
    model.load_state_dict(load_file(str(work / "model.safetensors"), device=device), strict=False)
    model.tie_weights()
    opt.load_state_dict(torch.load(work / "opt.pt", weights_only=True, map_location=device))
    sched.load_state_dict(state["sched"])
    return state["step"], state


def _save(work: Path, done: int, model, opt, sched, progress: dict) -> None:
    """Checkpoint `done` (weights, optimizer, schedule: train/checkpoint.py's atomic folder) and its progress (written
    first: a checkpoint never lacks its own); progress files of pruned checkpoints are removed."""
    write_json(work / PROGRESS / f"step-{done:08d}.json", progress)
    save_checkpoint(work, done, model, opt, sched, _OneProcess())
    kept = {p.name for p in (work / "checkpoints").glob("step-*")}
    for f in (work / PROGRESS).glob("step-*.json"):
        if f.stem not in kept:
            f.unlink(missing_ok=True)


def train_tiny_base_v2(init_from: str | Path, out: str | Path, cfg: TinyBaseV2Config = TinyBaseV2Config(),
                       eval_every: int = 500, essay_dir: str | None = None, log=print,
                       clock: Callable[[], float] = time.monotonic) -> dict:
    """Stage 2, resumable (`out`.stage2 every `save_every` steps; the rows of step s depend on (seed, s) alone, so a
    resumed run sees the rows an uninterrupted one would). On a GPU (`cfg.device`), with `cfg.workers` processes
    building batches and `cfg.minutes` fitting the schedule to a wall budget: the one-call recipe of
    benchmarks/gpu_tiny_base.py. `clock` (seconds) is what the budget reads: a test gives it a clock of its own, so
    that the fitted step count does not depend on how busy the machine is."""
    out, work = Path(out), Path(str(out) + ".stage2")
    source = resolve_model(init_from)  # 'tiny', 'tiny-v2' or a directory; meta records `init_from` as given
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, trust_remote_code=False)
    torch.manual_seed(cfg.seed)
    model = widen(grow(base, cfg.num_layers, cfg.native_length), cfg.width, seed=cfg.seed)
    work.mkdir(parents=True, exist_ok=True)  # after the model is built: a refused --num-layers writes nothing
    if cfg.head_dim:
        model = deepen_heads(model, cfg.head_dim, seed=cfg.seed)
    sampler = DocSampler(tok, TinyBaseConfig(native_length=cfg.native_length), np.random.default_rng(cfg.seed))
    hay = haystack_dirs(Path(str(out) + ".haystacks"), cfg.haystacks, cfg.seed) if cfg.haystacks else None
    ruler_rows = RulerRows(tok, cfg, hay)
    model.to(cfg.device)  # before the optimizer, so a resumed optimizer's state is cast to the model's device
    opt, sched = optimizer(model, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule)
    # plan: the steps this run takes (fitted once to cfg.minutes, never above cfg.steps); spent: wall seconds so far
    history, start, plan = [], 0, {"steps": cfg.steps, "fitted": None, "spent": 0.0, "budget_stop": False}
    if (resumed := _resume(work, model, opt, sched, cfg.device, log)) is not None:
        start, state = resumed
        history = state["history"]
        plan.update(fitted=state.get("fitted_steps"), spent=state.get("seconds", 0.0))
        plan["steps"] = min(plan["fitted"] or cfg.steps, cfg.steps)
        log(f"resumed stage 2 at step {start}")
    if plan["steps"] != cfg.steps:
        sched.lr_lambdas[0] = _schedule(cfg.warmup, plan["steps"], cfg.schedule)
    gpu = cfg.device.startswith("cuda")
    t0 = clock() - plan["spent"]
    timing = {"train_s": 0.0, "steps": 0, "eval_s": 0.0}  # training-step time after warmup (the rate), last check

    def evaluate(step: int, loss: float) -> None:
        model.eval()
        e0 = clock()
        with torch.no_grad():
            scores = ruler_accuracy(model, tok, cfg.native_length, 10, essay_dir)
            pk = passkey_accuracy(model, tok, cfg.native_length, 20)
        timing["eval_s"] = clock() - e0
        history.append({"step": step, "loss": round(loss, 4), "ruler@512": scores, "passkey@512": pk,
                        "minutes": round((clock() - t0) / 60, 1)})
        log(json.dumps(history[-1]))

    def save(done: int) -> None:
        _save(work, done, model, opt, sched, {"step": done, "history": history, "fitted_steps": plan["fitted"],
                                              "seconds": round(clock() - t0, 1)})

    if start == 0 and eval_every:
        evaluate(0, float("nan"))
    bar = tqdm(total=plan["steps"], initial=start, desc="tiny-base v2", mininterval=10)
    loss, done = float("nan"), start
    for step, ids, labels in batches(sampler, ruler_rows, cfg, start, cfg.steps):  # a refit may move the end
        if step >= plan["steps"]:
            break
        s0 = clock()
        loss = train_step(model, opt, sched, ids.to(cfg.device, non_blocking=gpu),
                          labels.to(cfg.device, non_blocking=gpu), autocast=gpu)
        done = step + 1
        if done > max(cfg.warmup, start + 1):  # the first step after a start or resume pays one-off costs
            timing["train_s"] += clock() - s0
            timing["steps"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if cfg.minutes and plan["fitted"] is None and timing["steps"] >= 20 and \
                timing["train_s"] >= min(30.0, 0.02 * 60 * cfg.minutes):
            rate = timing["steps"] / timing["train_s"]
            plan["steps"] = plan["fitted"] = bar.total = _fit_steps(
                cfg, done, rate, clock() - t0, eval_every, timing["eval_s"])
            sched.lr_lambdas[0] = _schedule(cfg.warmup, plan["steps"], cfg.schedule)
            log(f"{cfg.minutes} min budget: {plan['steps']} steps ({rate:.1f} training steps/s)")
        elif cfg.minutes and plan["fitted"] is not None and done % cfg.save_every == 0 and done < plan["steps"] \
                and timing["steps"] >= 20:
            steps = _refit(cfg, plan["steps"], done, timing["steps"] / timing["train_s"], clock() - t0,
                           eval_every, timing["eval_s"])
            if steps != plan["steps"]:
                plan["steps"] = plan["fitted"] = bar.total = steps
                sched.lr_lambdas[0] = _schedule(cfg.warmup, steps, cfg.schedule)
                log(f"{cfg.minutes} min budget: refitted to {steps} steps")
        if cfg.minutes and clock() - t0 > 60 * cfg.minutes and done < plan["steps"]:  # the budget is a limit
            log(f"{cfg.minutes} min budget spent: stopping at step {done} of {plan['steps']}")
            plan["steps"], plan["budget_stop"] = done, True
        if eval_every and (done % eval_every == 0 or done == plan["steps"]):
            evaluate(done, loss)
        if done % cfg.save_every == 0 or done == plan["steps"]:
            save(done)
    bar.close()
    if done < plan["steps"]:  # the loader ran out first (never expected): say so rather than save a short run
        raise RuntimeError(f"stage 2 stopped at step {done} of {plan['steps']}")
    meta = {"stage2": asdict(cfg), "steps_run": done, "fitted_steps": plan["fitted"],
            "stopped_by_budget": plan["budget_stop"], "init_from": str(init_from), "history": history,
            "python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
            "device": torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine(),
            "train_minutes": round((clock() - t0) / 60, 1)}
    with atomic_dir(out) as tmp:
        model.to("cpu").save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(Path(tmp) / "tiny_base.json", meta)
    return meta
