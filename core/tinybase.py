"""The embedded tiny base model: a byte-level BPE tokenizer and a small Llama trained here, on 2 CPU cores.

Why: the project has no model hub. A model that really retrieves at its native length (256 tokens) and really
fails beyond it makes every part of the pipeline (training, evaluation, reports) testable for real.
The training mix: natural text that ships with Python (language modelling) and synthetic retrieval documents
(passkeys, RULER-style key-value needles) whose loss is on the answer only, the recipe measured to learn
in-context retrieval fastest at this size.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from longrecipe import corpus
from longrecipe.tasks import passkey

SPECIAL = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>"}
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KV_NEEDLE = "One of the special magic numbers for {key} is: {value}."
KV_QUESTION = ("What is the special magic number for {key} mentioned in the provided text? The special magic number "
               "for {key} mentioned in the provided text is")
KV_INTRO = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards."
)


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


def train_tokenizer(vocab_size: int):
    """Byte-level BPE on the Python corpus; digits split one by one (so any number is learnable digit-wise)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(corpus.paragraphs()) + [NOISE, passkey.PREFIX, KV_INTRO], trainer=trainer)
    bos = tok.token_to_id(SPECIAL["bos"])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos']} $A", pair=f"{SPECIAL['bos']} $A $B", special_tokens=[(SPECIAL["bos"], bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"], pad_token=SPECIAL["pad"],
        model_max_length=1 << 30,
    )


def build_model(tokenizer, cfg: TinyBaseConfig):
    """A Llama-shaped model from a transformers config (RoPE, RMSNorm, SwiGLU), tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.native_length,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")


class DocSampler:
    """Training rows assembled from pre-tokenized pieces (fast: no tokenizer call per filler sentence)."""

    def __init__(self, tokenizer, cfg: TinyBaseConfig, rng: np.random.Generator):
        self.tok, self.cfg, self.rng = tokenizer, cfg, rng
        self.enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]
        self.sentences = [self.enc(" " + s) for s in corpus.sentences()]
        self.noise = self.enc(" " + NOISE)
        self.words = [self.enc(" " + w) for w in corpus.words()]
        self.word_text = corpus.words()
        self.period = self.enc(".")
        self.stream = np.array(self.enc(corpus.text()), dtype=np.int64)

    def _filler(self, n_tokens: int) -> list[int]:
        kind, out = self.rng.integers(3), []
        start = int(self.rng.integers(len(self.sentences)))
        while len(out) < n_tokens:
            if kind == 0:
                out += self.noise
            elif kind == 1:
                out += self.sentences[start % len(self.sentences)]
                start += 1
            else:
                for w in self.rng.integers(len(self.words), size=int(self.rng.integers(4, 12))):
                    out += self.words[w]
                out += self.period
        return out[:n_tokens]

    def _needle_doc(self, length: int, head: str, needles: list[str], question: str, answer: str):
        head_ids = [self.tok.bos_token_id] + self.enc(head)
        needle_ids = [self.enc(" " + n) for n in needles]
        q_ids, a_ids = self.enc(" " + question), self.enc(answer) + [self.tok.eos_token_id]
        room = length - len(head_ids) - sum(map(len, needle_ids)) - len(q_ids) - len(a_ids)
        filler = self._filler(max(room, 0))
        cuts = sorted(int(c) for c in self.rng.integers(0, len(filler) + 1, size=len(needle_ids)))
        ids, prev = list(head_ids), 0
        for cut, nid in zip(cuts, needle_ids):
            ids += filler[prev:cut] + nid
            prev = cut
        ids += filler[prev:] + q_ids
        return ids + a_ids, [-100] * len(ids) + a_ids

    def _key(self) -> str:
        w = self.rng.integers(len(self.word_text), size=2)
        return f"{self.word_text[w[0]]}-{self.word_text[w[1]]}"

    def passkey_doc(self, length: int):
        key = str(self.rng.integers(10 ** (d := int(self.rng.integers(4, 8))) // 10, 10**d))
        head = passkey.PREFIX if self.rng.random() < 0.7 else ""
        return self._needle_doc(length, head, [passkey.NEEDLE.format(key=key)], passkey.QUESTION, " " + key + ".")

    def kv_doc(self, length: int):
        keys = [self._key() for _ in range(int(self.rng.integers(1, 5)))]
        values = [str(self.rng.integers(1_000_000, 10_000_000)) for _ in keys]
        needles = [KV_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values)]
        q = int(self.rng.integers(len(keys)))
        question = KV_QUESTION.format(key=keys[q])
        return self._needle_doc(length, KV_INTRO, needles, question, " " + values[q] + ".")

    def text_doc(self, length: int):
        start = int(self.rng.integers(len(self.stream) - length))
        ids = [self.tok.bos_token_id] + self.stream[start : start + length - 1].tolist()
        return ids, list(ids)

    def batch(self) -> dict[str, torch.Tensor]:
        cfg, rows = self.cfg, []
        for _ in range(cfg.batch_size):
            u = self.rng.random()
            if u < cfg.mix_passkey + cfg.mix_kv:
                length = int(self.rng.integers(cfg.min_doc_length, cfg.native_length + 1))
                rows.append(self.passkey_doc(length) if u < cfg.mix_passkey else self.kv_doc(length))
            else:
                rows.append(self.text_doc(cfg.native_length))
        width = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), width), self.tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), torch.tensor(y)
        return {"input_ids": ids, "labels": labels}


def row_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of each row's mean next-token loss: a passkey row (one answer) weighs as much as a text row."""
    logp = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="none"
    ).view(labels.shape[0], -1)
    valid = (labels[:, 1:] != -100).float()
    return ((logp * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()


def passkey_accuracy(model, tokenizer, length: int, num_samples: int = 100, seed: int = 1234) -> float:
    """Exact-match passkey accuracy at `length` tokens (depths drawn uniformly)."""
    from longrecipe.evaluate.hf_backend import greedy_generate

    samples = passkey.generate(tokenizer, length, num_samples, seed=seed)
    preds = greedy_generate(model, tokenizer, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, 16)
    return float(np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)]))


def train_tiny_base(out: str | Path, cfg: TinyBaseConfig = TinyBaseConfig(), eval_every: int = 1000,
                    log=print) -> dict:
    """Train tokenizer and model from scratch, deterministically, and save a Hugging Face directory at `out`."""
    from tqdm.auto import tqdm

    from longrecipe.io import atomic_dir, write_json

    torch.manual_seed(cfg.seed)
    tok = train_tokenizer(cfg.vocab_size)
    model = build_model(tok, cfg)
    sampler = DocSampler(tok, cfg, np.random.default_rng(cfg.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))))
    history, t0 = [], time.time()
    for step in (bar := tqdm(range(cfg.steps), desc="tiny-base", mininterval=5)):
        model.train()
        batch = sampler.batch()
        loss = row_mean_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            acc = passkey_accuracy(model, tok, cfg.native_length, 50)
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "passkey@1x": acc,
                            "minutes": round((time.time() - t0) / 60, 1)})
            log(json.dumps(history[-1]))
    meta = {"config": asdict(cfg), "history": history, "python": sys.version.split()[0], "torch": torch.__version__,
            "machine": platform.machine(), "train_minutes": round((time.time() - t0) / 60, 1)}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(Path(tmp) / "tiny_base.json", meta)
    return meta
