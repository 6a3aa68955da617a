"""Evaluation during training (`train.eval`): the evaluator the trainer calls between steps on the weights it is
training (train/recipe.py), built from the evaluation components (evaluate/), which training itself never imports.

The samples are built once, before anything is written, by the same code as `longrecipe eval` (the same prompts, the
same scorers, the same keys: `train.eval.options` takes any eval key); the model generates through the hf backend
wrapped around the training model (no copy, no reload). Rows land in RUN/train_eval.jsonl with the step, the
training tokens and FLOPs; `report` draws them against training tokens.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from longrecipe.base import model_dirs
from longrecipe.base.config import ConfigError
from longrecipe.base.tokenization import load_tokenizer
from longrecipe.evaluate.config import COMMON, EvalConfig, backend_owners, from_section
from longrecipe.evaluate.runner import prepare, request, validate
from longrecipe.tasks import chat
from longrecipe.tasks.suites import REGISTRY
from longrecipe.train.config import RunConfig
from longrecipe.train.recipe import Evaluator

SAMPLING = ("seed", "batch_size", "chat_template")  # the eval keys that still mean something inside training
# the keys train.eval sets itself (from_section names them: "use train.eval.KEY" / "set by train.eval itself")
SECTION = ("suites", "lengths", "samples", "model", "out", "allow_extrapolation")


def lengths(cfg: RunConfig) -> tuple[int, ...]:
    """train.eval.lengths, else the base model's window and the target: where the native score must hold and
    where the extension must arrive."""
    if cfg.train.eval.lengths:
        return cfg.train.eval.lengths
    return tuple(sorted({model_dirs.window(cfg.model.path), cfg.train.target_length}))


def train_eval_config(cfg: RunConfig) -> EvalConfig:
    """The `longrecipe eval` config of train.eval (validated: unknown suites and keys are one line)."""
    ev = cfg.train.eval
    scored_alone = [s for s in ev.suites if s in REGISTRY and (REGISTRY[s].evaluator or not REGISTRY[s].per_length)]
    if scored_alone:
        choose = ", ".join(n for n, t in REGISTRY.items() if t.per_length and not t.evaluator)
        raise ConfigError(f"train.eval.suites: {scored_alone[0]} is not a generation suite scored per length "
                          f"(choose from {choose})")
    engine = sorted(k for k in ev.options if (k in COMMON or k in backend_owners()) and k not in SAMPLING
              and k not in SECTION)
    if engine:  # the evaluator runs the training model as it is: an engine key would be silently ignored
        raise ConfigError(f"train.eval.options.{engine[0]}: set by training (the evaluator runs the model being "
                          f"trained); train.eval takes the suites' keys and {', '.join(SAMPLING)}")
    # one prompt at a time unless told (its KV cache sits beside the training state: train/plan.py counts it)
    ecfg = from_section({"suites": ev.suites, "lengths": lengths(cfg), "samples": ev.samples, "options": ev.options},
                        {"model": cfg.model.path, "out": str(Path(cfg.out) / "train_eval"),
                         "allow_extrapolation": True}, "train.eval", "train.eval", defaults={"batch_size": 1})
    validate(ecfg)
    return ecfg


def evaluation(cfg: RunConfig) -> Evaluator:
    """Check train.eval and build its samples now, before anything is written (a prompt that cannot be built is
    one line, not a failure after training started); the evaluator then scores the model it is given."""
    ecfg = train_eval_config(cfg)
    tokenizer = load_tokenizer(model_dirs.resolve(cfg.model.path))
    if ecfg.chat_template:
        chat.wrapper(tokenizer)  # a tokenizer without a template: one line
    jobs = prepare(ecfg, tokenizer, log=lambda line: print(f"train.eval: {line}", file=sys.stderr))
    if not jobs:
        raise ConfigError(f"train.eval: no sample fits {', '.join(map(str, ecfg.lengths))} tokens for "
                          f"{', '.join(ecfg.suites)}; choose longer train.eval.lengths")

    def evaluate(model: Any) -> list[dict[str, Any]]:
        from longrecipe.evaluate.hf_backend import HFBackend

        backend = HFBackend.from_model(model, tokenizer, ecfg.batch_size)
        rows = []
        for job in jobs:
            texts = backend.generate([request(s) for s in job.samples])
            rows += [dataclasses.asdict(r) for r in REGISTRY[job.suite].score(texts, job.samples)]
        return rows

    return evaluate
