"""Position-index transforms: short training sequences whose position ids cover a long target window.

Why: a model learns relative distances up to the largest position gap it sees. These transforms let a sequence
of L_train tokens carry position ids spread over [0, L_target), so that training at ~30 % of the target length
teaches distances up to the target. All functions are pure and take a seeded `numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Method:
    """A position method: `baseline` marks the study's baselines (LongRecipe is the method under test);
    `full_length` trains on rows of the target length; `tiny_config` names its training config in train/configs/
    for the demo's tiny base ("": tiny_<name>.yaml)."""

    name: str
    help: str
    baseline: bool = True
    full_length: bool = False
    tiny_config: str = ""

    def __post_init__(self) -> None:
        if not self.tiny_config:
            object.__setattr__(self, "tiny_config", f"tiny_{self.name}.yaml")


# The registry: train.method choices (config Literal, CLI) and the study's methods. A new method = one entry here
# + its row builder in data.SampleBuilder.BUILDERS (checked at import).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("longrecipe", "sentences (or impactful-token windows) with random gaps between them", baseline=False),
    Method("flt", "full-length training: contiguous rows of the target length", full_length=True),
    Method("pose", "PoSE: two chunks with skipped positions between them"),
    Method("randpos", "RandPos: sorted random positions over the target window"),
)}
BASELINES: tuple[str, ...] = tuple(m for m, spec in METHODS.items() if spec.baseline)


def _check(length: int, target_length: int) -> None:
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if target_length < length:
        raise ValueError(f"target_length {target_length} is shorter than the sequence ({length} tokens)")


def longrecipe_positions(
    segment_lengths: Sequence[int], target_length: int, rng: np.random.Generator, max_gap: int | None = None
) -> list[int]:
    """LongRecipe positions: contiguous inside each segment (sentence), random gaps between segments.

    The first segment starts at 0. Default (the reference's form): the whole budget target_length - sum(lengths)
    is split uniformly at random (a random composition, stars and bars) over the gaps between segments and the
    unused tail, so the sample spans up to the whole target window. With `max_gap=M` (the paper's form) each gap
    is drawn from U{0..M}; gaps are scaled down proportionally if they would overrun the window.
    """
    lengths = [int(n) for n in segment_lengths]
    if any(n < 1 for n in lengths):
        raise ValueError("segment lengths must be >= 1")
    total = sum(lengths)
    _check(total, target_length)
    budget, n_gaps = target_length - total, len(lengths) - 1
    if max_gap is None:
        # n_gaps + 1 bins (the gaps and the tail) summing to `budget`: choose n_gaps bars among budget + n_gaps cells.
        bars = np.sort(rng.choice(budget + n_gaps, size=n_gaps, replace=False)) if n_gaps else np.array([], int)
        gaps = np.diff(np.concatenate([[-1], bars])) - 1
    else:
        gaps = rng.integers(0, max_gap + 1, size=n_gaps)
        if gaps.sum() > budget:
            gaps = np.floor(gaps * (budget / gaps.sum())).astype(int)
    out, start = [], 0
    for i, n in enumerate(lengths):
        out.extend(range(start, start + n))
        start += n + (int(gaps[i]) if i < n_gaps else 0)
    return out


def pose_positions(length: int, target_length: int, rng: np.random.Generator) -> list[int]:
    """Official PoSE (dwzhu-pku/PoSE): two chunks; chunk 1 = [0, split), split ~ U{1..(length+1)//2};
    chunk 2 continues at split + skip, skip ~ U{0..target_length - length}."""
    _check(length, target_length)
    split = int(rng.integers(1, (length + 1) // 2 + 1))
    skip = int(rng.integers(0, target_length - length + 1))
    return list(range(split)) + list(range(split + skip, length + skip))


def randpos_positions(length: int, target_length: int, rng: np.random.Generator) -> list[int]:
    """RandPos (Ruoss et al. 2023): a sorted random sample of `length` distinct positions in [0, target_length)."""
    _check(length, target_length)
    return np.sort(rng.choice(target_length, size=length, replace=False)).tolist()


def flt_positions(length: int) -> list[int]:
    """Full-length training: plain 0..length-1 on sequences of the target length."""
    return list(range(length))


def coverage(positions: Sequence[int]) -> dict[str, float]:
    """Statistics of a position sequence: mean contiguous run, number of runs, span (max distance covered)."""
    pos = np.asarray(positions)
    breaks = np.flatnonzero(np.diff(pos) != 1)
    runs = np.diff(np.concatenate([[0], breaks + 1, [len(pos)]]))
    return {"mean_run": float(runs.mean()), "runs": int(len(runs)), "span": int(pos[-1] - pos[0] + 1)}
