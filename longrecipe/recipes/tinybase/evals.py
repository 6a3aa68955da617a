"""The tiny base's progress checks, through the task contract: passkey and RULER samples and scores come from the
registered suites (tasks/suites.py), the same prompts and scores `longrecipe eval` gives; and the induction probe
(a model-internal check no suite has: top-1 accuracy on a repeated random sequence)."""

from __future__ import annotations

import numpy as np
import torch

from longrecipe.base.inference import greedy_generate
from longrecipe.recipes.tinybase.config import RULER_MIX
from longrecipe.tasks import passkey, ruler
from longrecipe.tasks.suites import REGISTRY


def _quiet(_: str) -> None:
    """The suites' notes (a task that does not fit is skipped) are not shown: a skipped task is a missing key."""


def passkey_accuracy(model, tokenizer, length: int, num_samples: int = 100, seed: int = 1234) -> float:
    """Exact-match passkey accuracy (0-1) at `length` tokens (depths drawn uniformly): the passkey suite's samples
    and score."""
    suite = REGISTRY["passkey"]
    samples = suite.samples(tokenizer, length, num_samples, seed, suite.Options(), log=_quiet)
    preds = greedy_generate(model, tokenizer, [s.prompt for s in samples], passkey.TOKENS_TO_GENERATE, 16)
    return suite.score(preds, samples)[0].value / 100


def ruler_accuracy(model, tokenizer, length: int, num_samples: int, essay_dir: str | None, seed: int = 42,
                   tasks: tuple[str, ...] = tuple(RULER_MIX)) -> dict[str, float]:
    """RULER scores (0-100) of `model` at `length` on `tasks` (tasks that do not fit are left out): the RULER suite's
    samples and scores, one task at a time."""
    suite, out = REGISTRY["ruler"], {}
    for task in tasks:
        try:
            samples = suite.samples(tokenizer, length, num_samples, seed,
                                    suite.Options(tasks=(task,), essay_dir=essay_dir), log=_quiet)
        except ValueError:
            continue
        if not samples:
            continue
        preds = greedy_generate(model, tokenizer, [s.prompt for s in samples], ruler.TOKENS_TO_GENERATE[task], 16)
        out[task] = suite.score(preds, samples)[0].value
    return out


def induction_accuracy(model, tokenizer, span: int, rows: int = 8, seed: int | np.random.Generator = 0) -> float:
    """Top-1 accuracy on the second copy of `rows` random token sequences of `span` tokens (tokens 2..span: the
    first cannot be known): near 1 with induction heads, the circuit a lookup by key builds on, near 0 without.
    `seed` may be a generator, to draw several spans from one stream."""
    seq = torch.from_numpy(np.random.default_rng(seed).integers(3, tokenizer.vocab_size, size=(rows, span)))
    ids = torch.cat([torch.full((rows, 1), tokenizer.bos_token_id), seq, seq], 1).to(model.device)
    with torch.no_grad():
        top = model(ids).logits[:, span + 1 : -1].argmax(-1).cpu()
    return float((top == seq[:, 1:]).float().mean())

