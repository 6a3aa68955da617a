"""`longrecipe run`: train, then evaluate the result (and the base model), then report, in one run directory.

Layout of `out`: config.yaml, train_log.jsonl, model/ (the trained model), eval/trained/ and eval/base/
(predictions, results.json), report/ (tables and plots).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from longrecipe.base import model_dirs, runlock
from longrecipe.evaluate.config import EvalConfig, RunEval, from_section
from longrecipe.evaluate.runner import run_eval, validate
from longrecipe.recipes.train_eval import evaluation
from longrecipe.reports.report import build_report
from longrecipe.train.config import RunConfig
from longrecipe.train.recipe import load_config, run_training


def default_lengths(native: int, target: int) -> tuple[int, ...]:
    """native, 2 x native, ... up to the target (the target itself included)."""
    out, n = [], native
    while n < target:
        out.append(n)
        n *= 2
    return (*out, target)


def run_eval_config(cfg: RunConfig, lengths: tuple[int, ...], path: str, name: str) -> EvalConfig:
    """The `longrecipe eval` config that `run` evaluates model `path` with (into out/eval/NAME)."""
    ev = dataclasses.asdict(RunEval.of(cfg))
    section = {k: v for k, v in ev.items() if k != "compare_base"}
    return from_section({**section, "lengths": tuple(lengths)},
                        {"model": path, "out": str(Path(cfg.out) / "eval" / name), "allow_extrapolation": True},
                        "eval", "`run`")


def eval_lengths(cfg: RunConfig) -> tuple[int, ...]:
    """eval.lengths, else the base model's window doubled up to the target (read from its config.json)."""
    if (ev := RunEval.of(cfg)).lengths:
        return ev.lengths
    return default_lengths(model_dirs.window(cfg.model.path), cfg.train.target_length)


def run_all(config_path: str, overrides: list[str] | tuple[str, ...] = (), log=print) -> Path:
    cfg = load_config(config_path, overrides)
    out = Path(cfg.out)
    lengths = eval_lengths(cfg)
    validate(run_eval_config(cfg, lengths, cfg.model.path, "base"))  # the eval section's suites and backend, first
    with runlock.hold(out):  # one owner per run directory (training and evaluation inside take it again)
        return _run(cfg, config_path, overrides, out, lengths, log)


def _run(cfg: RunConfig, config_path: str, overrides: list[str] | tuple[str, ...], out: Path,
         lengths: tuple[int, ...], log) -> Path:
    log(f"[1/3] training {cfg.train.method} ({cfg.train.stage}) -> {out / 'model'}")
    model = run_training(config_path, overrides, evaluation)
    runs = []
    targets = [("trained", str(model))] + ([("base", cfg.model.path)] if RunEval.of(cfg).compare_base else [])
    for name, path in targets:
        log(f"[2/3] evaluating {name} at {', '.join(map(str, lengths))}")
        ecfg = run_eval_config(cfg, lengths, path, name)
        run_eval(ecfg, command=f"longrecipe run --config {config_path}", log=log)
        runs.append(out / "eval" / name)
    log(f"[3/3] report -> {out / 'report'}")
    logs = {"trained": out / "train_log.jsonl"} if (out / "train_log.jsonl").exists() else {}
    curves = {"trained": out / "train_eval.jsonl"} if (out / "train_eval.jsonl").exists() else {}
    build_report(runs, out / "report", target=cfg.train.target_length, train_logs=logs, train_curves=curves)
    return out
