"""The trainer's config, as frozen dataclasses (see longrecipe.config for loading and overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    factor: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    source: str = "python"  # "python" (the corpus shipped with Python) or a JSONL file with a text field
    text_field: str = "text"
    selection: Literal["none", "random", "impactful"] = "none"
    keep_prob: float = 0.5  # sentence keep probability for selection=random
    # selection=impactful: keep sentences holding an anchor type; others with probability keep_other.
    # anchor_mode=digit is the reference release's shortcut (a sentence with a digit is an anchor sentence).
    anchors: tuple[str, ...] = ("NUM", "PRON", "AUX", "CCONJ", "ADP")
    anchors_from: str | None = None  # token_types.json of `longrecipe analyze`: its 5 most enriched types
    anchor_mode: Literal["types", "digit"] = "types"
    keep_other: float = 0.3
    max_gap: int | None = None  # None: the reference's budget form; M: the paper's gaps ~ U{0..M}


@dataclass(frozen=True)
class TrainConfig:
    stage: Literal["extension", "replay"] = "extension"
    method: Literal["longrecipe", "pose", "randpos", "flt"] = "longrecipe"
    target_length: int = 2048
    train_length: int = 614
    steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup: int = 10
    schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 0
    log_every: int = 1
    loss_chunk: int = 0  # tokens per checkpointed loss chunk; 0 = auto (about 1 GiB of fp32 logits per chunk)
    compile: bool = False  # torch.compile each decoder layer (regional): faster steps after a one-off compile
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int = 0
    distributed: Literal["auto", "ddp", "fsdp2"] = "auto"  # under torchrun; auto = ddp
    tensorboard: bool = False


@dataclass(frozen=True)
class EvalSection:
    """What `longrecipe run` evaluates after training (ignored by `longrecipe train`)."""

    suites: tuple[str, ...] = ("ruler", "niah", "passkey")
    lengths: tuple[int, ...] = ()  # default: the native window doubled up to the target length
    samples: int = 20
    backend: Literal["hf", "vllm"] = "hf"
    essay_dir: str | None = None
    compare_base: bool = True


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalSection = field(default_factory=EvalSection)

    def validate(self) -> RunConfig:
        t = self.train
        if t.train_length < 2 or t.target_length < t.train_length:
            raise ValueError(f"train.train_length ({t.train_length}) must be >= 2 and <= train.target_length "
                             f"({t.target_length})")
        if t.stage == "extension" and t.method == "flt" and t.train_length != t.target_length:
            raise ValueError("train.method=flt trains at the target length: set train.train_length = "
                             "train.target_length")
        if t.steps < 1 or t.batch_size < 1 or t.grad_accum < 1:
            raise ValueError("train.steps, train.batch_size and train.grad_accum must be >= 1")
        from longrecipe.train.lexicon import TYPES

        bad = [a for a in self.data.anchors if a not in TYPES]
        if bad:
            raise ValueError(f"data.anchors: unknown type {bad[0]!r}; choose from {', '.join(TYPES)}")
        if not (0.0 <= self.data.keep_prob <= 1.0 and 0.0 <= self.data.keep_other <= 1.0):
            raise ValueError("data.keep_prob and data.keep_other must be probabilities in [0, 1]")
        return self
