"""The tiny base's two configs and the checks of stage-2 options (torch-free: the command line checks its flags
before anything heavy is imported)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from longrecipe.base.config import ConfigError, option


@dataclass(frozen=True)
class TinyBaseConfig:
    """Size and schedule of the tiny base model (defaults = the committed model)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    native_length: int = 256
    rope_theta: float = 10000.0
    steps: int = 9000
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 200
    seed: int = 0
    min_doc_length: int = 96
    mix_passkey: float = 0.55
    mix_kv: float = 0.25


# ----------------------------------------------------------------------------------------------------------------
# v2: native window 512, grown from v1, trained on RULER's formats with fresh content (issue #17 A)

RULER_MIX = {  # task -> weight: the harder variants drawn more often
    "niah_single_1": 1.0, "niah_single_2": 1.0, "niah_single_3": 1.5, "niah_multikey_1": 2.0,
    "niah_multikey_2": 2.0, "niah_multikey_3": 2.5, "niah_multivalue": 2.0, "niah_multiquery": 2.0, "fwe": 1.0,
}
TRAIN_SEED_BASE = 10_000_000  # RULER content seeds of training rows; every evaluation seed in the project is lower
# A binding row needs ~192 tokens (its header, a needle and a question; a uuid key takes ~100 of them): asked for
# less, `DocSampler.binding_doc` overflows or falls back to a key-value row (measured: at 160 tokens over half do).
MIN_BINDING_LENGTH = 192
ROW_KINDS = ("ruler", "passkey", "kv", "binding", "repeat")  # --rows KIND=SHARE: the mix_KIND fields


@dataclass(frozen=True)
class TinyBaseV2Config:
    """Stage 2 of the tiny base: grow v1 (2 -> `num_layers` layers, function-preserving) and train it at 512 on
    natural text + passkey/key-value rows + RULER-format rows (own haystack: the Python corpus, seeds above
    TRAIN_SEED_BASE), loss on answers only for task rows, row-mean."""

    num_layers: int = option(4, "stage 2: grow v1 to this many layers (function-preserving, see `grow`)")
    native_length: int = 512
    steps: int = 4000
    batch_size: int = option(16, "stage 2: rows per step")
    lr: float = option(1e-3, "stage 2: peak learning rate")
    warmup: int = option(100, "stage 2: warmup steps")
    seed: int = 1
    min_doc_length: int = 96
    mix_ruler: float = 0.55
    mix_passkey: float = 0.12
    mix_kv: float = 0.08
    mix_binding: float = 0.0  # dense key-binding rows (DocSampler.binding_doc), min..max_binding_length tokens
    min_binding_length: int = option(MIN_BINDING_LENGTH, "stage 2: shortest binding row")
    mix_repeat: float = 0.0  # repeated random sequences (DocSampler.repeat_doc), min_binding_length..max_binding_length
    # 0: native_length (both >= MIN_BINDING_LENGTH: shorter rows overflow)
    max_binding_length: int = option(0, "stage 2: longest binding row (0: the window)")
    save_every: int = 250
    width: int = option(1, "stage 2: widen the model this many times (hidden size, heads, MLP; see `widen`)")
    head_dim: int = option(0, "stage 2: grow every attention head to this width (a multiple of 32; "
                                "function-preserving, see `deepen_heads`; 0: keep)")
    schedule: Literal["cosine", "constant"] = option("cosine", "stage 2: lr schedule (constant: warmup then a flat lr, "
                                                     "a continuation of a trained stage 2)")
    haystacks: int = option(0, "stage 2: RULER rows use this many shuffled corpus haystacks (0: the corpus prefix)")
    min_ruler_length: int = option(256, "stage 2: shortest RULER row (rows are this..native_length tokens, + the "
                                   "answer budget)")
    follow_ups: int = option(0, "stage 2: NIAH rows ask up to N more single-key questions about other needles "
                                "after their answer")
    ruler_mix: tuple[tuple[str, float], ...] = tuple(RULER_MIX.items())
    device: str = option("cpu", "stage 2: cpu or cuda (the model and its batches on the GPU, bf16 autocast)")
    workers: int = option(0, "stage 2: processes building batches ahead of the model (the batches are the same "
                                "for any number)")
    minutes: float = option(0.0, "stage 2: wall-clock budget; the step count (at most --steps) is fitted to it "
                                 "after warmup, and the run stops and saves when it is spent (0: none)")

    # the fields `tiny-base --init-from` takes as flags (--num-layers, ...; --mix and --rows set the mixes)
    FLAGS = ("num_layers", "lr", "width", "head_dim", "schedule", "haystacks", "min_ruler_length", "warmup",
             "follow_ups", "min_binding_length", "max_binding_length", "device", "workers", "minutes", "batch_size")

    @classmethod
    def check_overrides(cls, values: dict[str, Any]) -> dict[str, Any]:
        """`values` (fields given on the command line or by a caller) checked against one another and the defaults;
        returns them unchanged, or raises ConfigError (one line, named by flag)."""
        if not (0 <= values.get("minutes", 0) < math.inf) or values.get("workers", 0) < 0 \
                or values.get("batch_size", 1) < 1 or values.get("num_layers", 2) < 2 \
                or values.get("follow_ups", 0) < 0:
            raise ConfigError("--minutes must be a finite number >= 0, --workers >= 0, --batch-size >= 1 and "
                              "--num-layers >= 2 (v1's depth), --follow-ups >= 0")
        low = values.get("min_binding_length", cls.min_binding_length)
        high = values.get("max_binding_length", cls.max_binding_length) or cls.native_length
        if not MIN_BINDING_LENGTH <= low <= high <= cls.native_length:
            raise ConfigError(f"binding rows: need {MIN_BINDING_LENGTH} <= --min-binding-length <= "
                              f"--max-binding-length <= {cls.native_length}; got {low} and {high}")
        _check_shares(values)
        return values

    @classmethod
    def from_overrides(cls, values: dict[str, Any]) -> TinyBaseV2Config:
        """The config with `values` over the defaults, once `check_overrides` accepts them."""
        return cls(**cls.check_overrides(values))


def _check_shares(values: dict[str, Any]) -> None:
    shares = {k: values.get(f"mix_{k}", getattr(TinyBaseV2Config, f"mix_{k}")) for k in ROW_KINDS}
    if min(shares.values()) < 0 or sum(shares.values()) > 1:
        raise ConfigError(f"--rows: shares must be >= 0 and sum to at most 1 (the rest is natural text); got "
                          f"{shares}")


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """--mix TASK=WEIGHT,...: RULER_MIX with the weights given replaced (the `ruler_mix` field)."""
    mix = dict(RULER_MIX)
    for item in text.split(","):
        task, _, weight = item.partition("=")
        if task not in mix:
            raise ConfigError(f"--mix: unknown task {task!r} (choose from {', '.join(mix)})")
        try:
            mix[task] = float(weight)
        except ValueError:
            raise ConfigError(f"--mix: {item!r} is not TASK=WEIGHT") from None
    return tuple(mix.items())


def parse_rows(text: str) -> dict[str, float]:
    """--rows KIND=SHARE,...: the `mix_KIND` fields given (the other kinds keep their defaults; the shares, with
    those defaults, must be >= 0 and sum to at most 1)."""
    out: dict[str, float] = {}
    for item in text.split(","):
        kind, _, share = item.partition("=")
        if kind not in ROW_KINDS:
            raise ConfigError(f"--rows: unknown row kind {kind!r} (choose from {', '.join(ROW_KINDS)})")
        try:
            out[f"mix_{kind}"] = float(share)
        except ValueError:
            raise ConfigError(f"--rows: {item!r} is not KIND=SHARE") from None
    _check_shares(out)
    return out
