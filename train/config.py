"""The trainer's config, as frozen dataclasses (see longrecipe.base.config for loading and overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from longrecipe.base.config import ConfigError, bounded, check
from longrecipe.train.lexicon import TYPES
from longrecipe.train.positions import METHODS


@dataclass(frozen=True)
class ModelConfig:
    path: str = "tiny"
    # auto: flash_attention_2 on CUDA when flash-attn is installed, else sdpa (same results, see attention.py)
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False


@dataclass(frozen=True)
class RopeConfig:
    method: Literal["ntk-at-target", "yarn", "linear", "llama3", "none"] = "ntk-at-target"
    factor: float = bounded(1.0, gt=0)


@dataclass(frozen=True)
class DataConfig:
    # "python" (the corpus shipped with Python), a JSONL or Parquet file (or folder) or hub:NAME[@SPLIT] with a text
    # field (tokenized once into the run's token_store/), or a token store folder (`longrecipe tokenize`)
    source: str = "python"
    text_field: str = "text"
    selection: Literal["none", "random", "impactful"] = "none"
    keep_prob: float = bounded(0.5, ge=0, le=1)  # sentence keep probability for selection=random
    # selection=impactful: keep sentences holding an anchor type; others with probability keep_other.
    # anchor_mode=digit is the reference release's shortcut (a sentence with a digit is an anchor sentence).
    anchors: tuple[str, ...] = ("NUM", "PRON", "AUX", "CCONJ", "ADP")
    anchors_from: str | None = None  # token_types.json of `longrecipe analyze`: its 5 most enriched types
    anchor_mode: Literal["types", "digit"] = "types"
    keep_other: float = bounded(0.3, ge=0, le=1)
    max_gap: int | None = bounded(None, ge=0)  # None: the reference's budget form; M: the paper's gaps ~ U{0..M}
    # share of rows a 30 % method (not FLT) takes as plain contiguous tokens with positions 0..n-1: the same rows
    # for every method (drawn from the window stream); keeps the native window's local order exercised
    plain_fraction: float = bounded(0.0, ge=0, le=1)


@dataclass(frozen=True)
class TrainEvalSection:
    """`train.eval`: long-context scores during training, on the current weights in the training process between
    steps (every `every` steps and at the last one), appended with the step, training tokens and FLOPs to the run's
    train_eval.jsonl. Why: the curves show when the target length is reached (and whether the native window falls),
    which is what one needs to choose steps and the token ratio; `run` only evaluates once training has ended."""

    every: int = bounded(0, ge=0)  # 0: no evaluation during training
    suites: tuple[str, ...] = ("passkey",)  # generation suites (passkey, ruler, niah)
    lengths: tuple[int, ...] = ()  # default: the base model's window and train.target_length
    samples: int = bounded(10, ge=1)  # per length; the same samples at every evaluation
    # any other `longrecipe eval` key (ruler_tasks, niah_depths, chat_template, seed, batch_size, ...)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    stage: Literal["extension", "replay"] = "extension"
    method: Literal[tuple(METHODS)] = "longrecipe"  # type: ignore[valid-type]  (the registry's names)
    target_length: int = bounded(2048, ge=2)
    train_length: int = bounded(614, ge=2)
    steps: int = bounded(100, ge=1)
    batch_size: int = bounded(4, ge=1)  # sequences per optimizer step, over all processes (the paper's 96)
    micro_batch_size: int = bounded(0, ge=0)  # rows per process per forward; 0: batch_size / processes (no accum.)
    lr: float = bounded(5e-4, gt=0)
    min_lr_ratio: float = bounded(0.1, ge=0, le=1)
    warmup: int = bounded(10, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = bounded(0.0, ge=0)
    max_grad_norm: float = bounded(1.0, gt=0)
    seed: int = bounded(0, ge=0)
    save_every: int = bounded(0, ge=0)  # 0: no checkpoints
    # write checkpoints in a background thread from a host-memory copy (train/checkpoint.py, Checkpointer)
    async_save: bool = False
    log_every: int = bounded(1, ge=1)
    # tokens per checkpointed loss chunk; 0 = auto (about 1 GiB of fp32 logits per chunk)
    loss_chunk: int = bounded(0, ge=0)
    # activation checkpointing: auto = full when model.gradient_checkpointing, else none; selective = every
    # `checkpoint_every`-th decoder layer (less recompute than full, less memory than none)
    checkpointing: Literal["auto", "none", "full", "selective"] = "auto"
    checkpoint_every: int = bounded(2, ge=1)
    compile: bool = False  # torch.compile each decoder layer (regional): faster steps after a one-off compile
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int = bounded(0, ge=0)  # 0: torch's default
    distributed: Literal["auto", "ddp", "fsdp2"] = "auto"  # under torchrun; auto = ddp
    # processes that share each row, 1/N of its tokens each (Ulysses all-to-all over heads, train/ulysses.py);
    # consecutive torchrun ranks form a group, the groups are the data-parallel replicas (world / N of them)
    sequence_parallel: int = bounded(1, ge=1)
    tensorboard: bool = False
    eval: TrainEvalSection = field(default_factory=TrainEvalSection)


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # what `longrecipe run` evaluates after training: a mapping that training never reads (recipes/run.py `RunEval`
    # checks it; `longrecipe train` and `run` refuse a bad one before anything runs)
    eval: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Checks across keys (each key's own range is checked when the config is built)."""
        check(self)
        t = self.train
        if t.train_length < 2 or t.target_length < t.train_length:
            raise ConfigError(f"train.train_length ({t.train_length}) must be >= 2 and <= train.target_length "
                              f"({t.target_length})")
        if t.stage == "extension" and METHODS[t.method].full_length and t.train_length != t.target_length:
            raise ConfigError("train.method=flt trains at the target length: set train.train_length = "
                              "train.target_length")
        if t.train_length % t.sequence_parallel:
            raise ConfigError(f"train.sequence_parallel={t.sequence_parallel} does not divide train.train_length "
                              f"({t.train_length}): each process takes an equal slice of every row")
        ev = t.eval
        past = [n for n in ev.lengths if n > t.target_length]
        if ev.every and past:
            raise ConfigError(f"train.eval.lengths: {past[0]} is past train.target_length ({t.target_length}): the "
                              f"model is trained for at most {t.target_length} tokens")
        if ev.every and (t.sequence_parallel > 1 or t.distributed == "fsdp2"):
            raise ConfigError("train.eval needs every process to hold the whole model (one process, or ddp): its "
                              "generation runs in the first process between steps; evaluate the checkpoints instead")
        if any(n < 1 for n in ev.lengths):
            raise ConfigError(f"train.eval.lengths: expected positive lengths, got {list(ev.lengths)}")
        bad = [a for a in self.data.anchors if a not in TYPES]
        if bad:
            raise ConfigError(f"data.anchors: unknown type {bad[0]!r}; choose from {', '.join(TYPES)}")
        return self
