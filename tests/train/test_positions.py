"""Position transforms: properties (hypothesis) and values derived by hand from the references' definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from longrecipe.train import positions as P

segments = st.lists(st.integers(1, 40), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(segs=segments, extra=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1))
def test_longrecipe_properties(segs, extra, seed):
    target = sum(segs) + extra
    pos = P.longrecipe_positions(segs, target, np.random.default_rng(seed))
    assert len(pos) == sum(segs) and pos[0] == 0 and max(pos) < target
    assert all(b > a for a, b in zip(pos, pos[1:]))  # strictly increasing
    start = 0
    for n in segs:  # contiguous inside each segment
        assert pos[start : start + n] == list(range(pos[start], pos[start] + n))
        start += n


@settings(max_examples=100, deadline=None)
@given(segs=segments, extra=st.integers(0, 500), gap=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_longrecipe_paper_form(segs, extra, gap, seed):
    target = sum(segs) + extra
    pos = P.longrecipe_positions(segs, target, np.random.default_rng(seed), max_gap=gap)
    assert max(pos) < target and pos[0] == 0
    jumps = np.diff(pos) - 1
    assert all(0 <= j <= gap for j in jumps)


def test_longrecipe_budget_is_a_uniform_composition():
    # Two segments of 1 token, target 4: budget 2 split over (gap, tail) = (0,2), (1,1), (2,0) equally often.
    rng = np.random.default_rng(0)
    counts = {0: 0, 1: 0, 2: 0}
    for _ in range(6000):
        counts[P.longrecipe_positions([1, 1], 4, rng)[1] - 1] += 1
    assert all(abs(c / 6000 - 1 / 3) < 0.03 for c in counts.values()), counts


def test_longrecipe_spans_the_window_on_average():
    rng = np.random.default_rng(1)
    spans = [P.longrecipe_positions([10] * 60, 2048, rng)[-1] for _ in range(200)]
    # 60 segments, budget 1448 over 60 bins: the tail bin holds 1448/60 on average
    assert abs(np.mean(spans) - (2048 - 1 - 1448 / 60)) < 15


@settings(max_examples=200, deadline=None)
@given(length=st.integers(2, 500), extra=st.integers(0, 5000), seed=st.integers(0, 2**32 - 1))
def test_pose_properties(length, extra, seed):
    target = length + extra
    pos = P.pose_positions(length, target, np.random.default_rng(seed))
    assert len(pos) == length and pos[0] == 0 and max(pos) < target
    jumps = [i for i in range(1, length) if pos[i] != pos[i - 1] + 1]
    assert len(jumps) <= 1
    split = jumps[0] if jumps else None
    if split is not None:
        assert 1 <= split <= (length + 1) // 2


def test_pose_matches_reference_draws():
    # Reference: rt1 = randint(1, (L+1)//2); rt = randint(0, target - L); pos[rt1:] += rt.
    rng = np.random.default_rng(7)
    pos = P.pose_positions(10, 100, rng)
    ref = np.random.default_rng(7)
    split = int(ref.integers(1, 6))
    skip = int(ref.integers(0, 91))
    assert pos == list(range(split)) + [i + skip for i in range(split, 10)]


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 300), extra=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1))
def test_randpos_properties(length, extra, seed):
    target = length + extra
    pos = P.randpos_positions(length, target, np.random.default_rng(seed))
    assert len(pos) == length == len(set(pos)) and pos == sorted(pos) and 0 <= pos[0] and pos[-1] < target


def test_errors_and_coverage():
    import pytest

    with pytest.raises(ValueError, match="shorter than"):
        P.pose_positions(10, 5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        P.longrecipe_positions([0, 3], 10, np.random.default_rng(0))
    assert P.flt_positions(4) == [0, 1, 2, 3]
    assert P.coverage([0, 1, 2, 10, 11, 20]) == {"mean_run": 2.0, "runs": 3, "span": 21}
