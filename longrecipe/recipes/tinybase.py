"""The embedded tiny base model: a byte-level BPE tokenizer and a small Llama trained here, on 2 CPU cores.

Why: the project has no model hub. A model that really retrieves at its native length (256 tokens) and really
fails beyond it makes every part of the pipeline (training, evaluation, reports) testable for real.
The training mix: natural text that ships with Python (language modelling) and synthetic retrieval documents
(passkeys, RULER-style key-value needles) whose loss is on the answer only, the recipe measured to learn
in-context retrieval fastest at this size.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from longrecipe.base import corpus
from longrecipe.base.io import atomic_dir, write_json
from longrecipe.base.modeling import greedy_generate
from longrecipe.base.models import resolve as resolve_model
from longrecipe.tasks import passkey, ruler
from longrecipe.tasks.ruler import common as ruler_common
from longrecipe.tasks.ruler import niah as ruler_niah

SPECIAL = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>"}
NOISE = corpus.FILLER
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

    def binding_doc(self, length: int):
        """A `_binding_doc` of at most `length` tokens (drawn again when uuids made it longer; at worst a kv_doc)."""
        for _ in range(8):
            ids, labels = self._binding_doc(length)
            if len(ids) <= length:
                return ids, labels
        return self.kv_doc(length)

    def _binding_doc(self, length: int):
        """Dense key binding in RULER's own wording: 2-16 needles ("One of the special magic numbers for K is: V.",
        adjective-noun or uuid keys, 7-digit or uuid values, sometimes 2-4 values per key) with a little filler
        between them, then questions about several keys, each followed by its answer, every answer supervised.
        Why (issue #17): a RULER row supervises one answer after hundreds of tokens, and its single-needle
        variants can be solved by copying whatever follows "magic number"; the multi-key variants need the key
        bound to its value, which the model learns only from rows where the other keys are present and asked
        about. Their effect on RULER at 512 (a 3000-step run): benchmarks/RESULTS.md, "third attempt"."""
        draw = ruler_common.Draw(self.rng)
        key_kind = "uuids" if self.rng.random() < 0.2 else "words"
        typ = "uuids" if self.rng.random() < 0.25 else "numbers"
        nv = 1 if self.rng.random() < 0.75 else int(self.rng.integers(2, 5))
        keys, values, needles, used = [], [], [], 0
        while len(keys) < 16:
            key, vals = draw.value(key_kind), [draw.value(typ) for _ in range(nv)]
            more = [self.enc(" " + ruler_niah.NEEDLE.format(type_needle_v=typ, key=key, value=v)) for v in vals]
            if keys and used + sum(map(len, more)) > 0.4 * length:
                break
            keys.append(key)
            values.append(vals)
            needles += more
            used += sum(map(len, more))
        order = self.rng.permutation(len(needles))
        ids = [self.tok.bos_token_id] + self.enc(ruler_niah.TEMPLATE.split("\n")[0].format(type_needle_v=typ))
        for i in order:
            ids += self._filler(int(self.rng.integers(0, 24))) + needles[i]
        question = RULER_QUESTION
        if nv == 1:  # RULER's singular wording when one value is asked for
            question, typ = ruler_niah.singular(question), typ[:-1]
        labels, answered = [-100] * len(ids), False
        for q in self.rng.permutation(len(keys)):
            text = question.format(type_needle_v=typ, query=keys[q])
            q_ids, a_ids = self.enc("\n" + text), self.enc(" " + ", ".join(values[q]) + ".")
            if len(ids) + len(q_ids) + len(a_ids) + 1 > length and answered:
                break
            ids += q_ids + a_ids
            labels += [-100] * len(q_ids) + a_ids
            answered = True
        return ids + [self.tok.eos_token_id], labels + [self.tok.eos_token_id]

    def repeat_doc(self, length: int):
        """A random sequence (vocabulary pieces or corpus words) written out again and again up to `length` tokens,
        the loss on every repetition. Why (issue #17): the v2 models had no induction heads (a repeated random
        sequence was not predicted at all: benchmarks/RESULTS.md, seventh attempt), the circuit that finds an
        earlier occurrence of the current context and copies what followed it; RULER's multi-key lookups need it,
        and repeated random sequences are the data that forms it fastest in small transformers."""
        span = int(self.rng.integers(8, max(9, length // 3)))
        if self.rng.random() < 0.5:
            seq = self.rng.integers(3, self.tok.vocab_size, size=span).tolist()
        else:
            seq = [t for w in self.rng.integers(len(self.words), size=span) for t in self.words[w]][:span]
        ids = [self.tok.bos_token_id] + seq
        while len(ids) < length:
            ids += seq
        ids = ids[:length]
        return ids, [-100] * (1 + len(seq)) + ids[1 + len(seq):]

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
        ids, labels = pad_rows(rows, self.tok.pad_token_id)
        return {"input_ids": ids, "labels": labels}


def pad_rows(rows: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, labels) rows right-padded to the longest (labels -100 on padding)."""
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), torch.tensor(y)
    return ids, labels


def row_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of each row's mean next-token loss: a passkey row (one answer) weighs as much as a text row."""
    logp = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="none"
    ).view(labels.shape[0], -1)
    valid = (labels[:, 1:] != -100).float()
    return ((logp * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()


def optimizer(model, lr: float, warmup: int, steps: int, schedule: str = "cosine"):
    """AdamW and the schedule both stages use: linear warmup, then cosine from lr to lr/10 (or a constant lr)."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r} (cosine, constant)")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _schedule(warmup, steps, schedule))


def _schedule(warmup: int, steps: int, schedule: str):
    """The lr multiplier at step s (a function, so that a run whose length is fitted after warmup can swap it)."""
    flat = schedule == "constant"
    return lambda s: min(1.0, (s + 1) / warmup) * (
        1.0 if flat else 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))


def train_step(model, opt, sched, ids: torch.Tensor, labels: torch.Tensor, autocast: bool = False) -> float:
    """One optimizer step on the row-mean loss (gradients clipped at 1); returns the loss. `autocast`: the forward
    in bf16 on CUDA (fp32 weights and optimizer state), as the GPU recipe runs it."""
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = row_mean_loss(model(input_ids=ids).logits.float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.item()


def passkey_accuracy(model, tokenizer, length: int, num_samples: int = 100, seed: int = 1234) -> float:
    """Exact-match passkey accuracy at `length` tokens (depths drawn uniformly)."""
    samples = passkey.generate(tokenizer, length, num_samples, seed=seed)
    preds = greedy_generate(model, tokenizer, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, 16)
    return float(np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)]))


def induction_accuracy(model, tokenizer, span: int, rows: int = 8, seed: int | np.random.Generator = 0) -> float:
    """Top-1 accuracy on the second copy of `rows` random token sequences of `span` tokens (tokens 2..span: the
    first cannot be known): near 1 with induction heads, the circuit a lookup by key builds on, near 0 without.
    `seed` may be a generator, to draw several spans from one stream."""
    seq = torch.from_numpy(np.random.default_rng(seed).integers(3, tokenizer.vocab_size, size=(rows, span)))
    ids = torch.cat([torch.full((rows, 1), tokenizer.bos_token_id), seq, seq], 1).to(model.device)
    with torch.no_grad():
        top = model(ids).logits[:, span + 1 : -1].argmax(-1).cpu()
    return float((top == seq[:, 1:]).float().mean())


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


# ----------------------------------------------------------------------------------------------------------------
# v2: native window 512, grown from v1, trained on RULER's formats with fresh content (issue #17 A)

RULER_MIX = {  # task -> weight: the harder variants drawn more often
    "niah_single_1": 1.0, "niah_single_2": 1.0, "niah_single_3": 1.5, "niah_multikey_1": 2.0,
    "niah_multikey_2": 2.0, "niah_multikey_3": 2.5, "niah_multivalue": 2.0, "niah_multiquery": 2.0, "fwe": 1.0,
}
TRAIN_SEED_BASE = 10_000_000  # RULER content seeds of training rows; every evaluation seed in the project is lower


@dataclass(frozen=True)
class TinyBaseV2Config:
    """Stage 2 of the tiny base: grow v1 (2 -> `num_layers` layers, function-preserving) and train it at 512 on
    natural text + passkey/key-value rows + RULER-format rows (own haystack: the Python corpus, seeds above
    TRAIN_SEED_BASE), loss on answers only for task rows, row-mean."""

    num_layers: int = 4
    native_length: int = 512
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 1
    min_doc_length: int = 96
    mix_ruler: float = 0.55
    mix_passkey: float = 0.12
    mix_kv: float = 0.08
    mix_binding: float = 0.0  # dense key-binding rows (DocSampler.binding_doc), min..max_binding_length tokens
    min_binding_length: int = 192
    mix_repeat: float = 0.0  # repeated random sequences (DocSampler.repeat_doc), min_binding_length..max_binding_length
    max_binding_length: int = 0  # 0: native_length (both >= 192: shorter rows overflow, see cli._check_binding_lengths)
    save_every: int = 250
    width: int = 1  # > 1: widen the grown model this many times (hidden size, heads, MLP), see `widen`
    head_dim: int = 0  # > 0: grow every head to this dimension (a multiple of the old one), see `deepen_heads`
    schedule: str = "cosine"  # or "constant": warmup then a flat lr (a continuation of a trained stage 2)
    haystacks: int = 0  # > 0: RULER rows draw their haystack from this many shuffles of the corpus (not one prefix)
    min_ruler_length: int = 256  # RULER rows are min_ruler_length..native_length tokens (+ the answer budget)
    follow_ups: int = 0  # > 0: NIAH rows ask up to this many more single-key questions (RulerRows)
    ruler_mix: tuple[tuple[str, float], ...] = tuple(RULER_MIX.items())
    device: str = "cpu"  # "cuda": the model and its batches on the GPU, the forward under bf16 autocast
    workers: int = 0  # > 0: processes that build the batches ahead of the model (the same batches as 0)
    minutes: float = 0.0  # > 0: a wall-clock budget; the step count is fitted to it after warmup (see _fit_steps)


def grow(model, num_layers: int, native_length: int):
    """A deeper copy of `model` that computes the same function: layer i of the new model copies old layer
    i * old // new, and every copy after the first of a layer has its output projections (o_proj, down_proj) zeroed,
    so it adds nothing to the residual stream until training moves it. Never shallower: dropping layers would change
    the function (a continuation of an 8-layer v2 needs --num-layers 8, not the default 4)."""
    old = model.config.num_hidden_layers
    if num_layers < old:
        raise ValueError(f"cannot grow a {old}-layer model to {num_layers} layers: give --num-layers {old} or more")
    conf = copy.deepcopy(model.config)
    conf.num_hidden_layers, conf.max_position_embeddings = num_layers, native_length
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    new.model.embed_tokens.load_state_dict(model.model.embed_tokens.state_dict())
    new.model.norm.load_state_dict(model.model.norm.state_dict())
    seen = set()
    for i, layer in enumerate(new.model.layers):
        src = i * old // num_layers
        layer.load_state_dict(model.model.layers[src].state_dict())
        if src in seen:
            torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
            torch.nn.init.zeros_(layer.mlp.down_proj.weight)
        seen.add(src)
    new.tie_weights()
    return new


def widen(model, factor: int, noise: float = 1e-3, seed: int = 0):
    """A `factor`-times wider copy of `model` (hidden size, attention heads and MLP width; head dim and RoPE kept)
    that computes the same function up to `noise`: every hidden unit, head and MLP unit is repeated `factor` times,
    the weights reading a repeated input are divided by `factor`, RMSNorm is unchanged by repetition (the mean of
    squares is the same) and the final norm is divided by `factor` so the tied embedding gives the same logits.
    `noise` (relative to each weight's std) breaks the symmetry of the copies, which identical gradients would
    otherwise keep identical forever."""
    if factor == 1:
        return model
    conf = copy.deepcopy(model.config)
    hd = conf.head_dim
    conf.hidden_size *= factor
    conf.intermediate_size *= factor
    conf.num_attention_heads *= factor
    conf.num_key_value_heads *= factor
    conf.head_dim = hd
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(seed)

    def rep(w: torch.Tensor, out: bool, inp: bool) -> torch.Tensor:
        if inp:
            w = torch.cat([w] * factor, dim=-1) / factor
        if out:
            w = torch.cat([w] * factor, dim=0)
        return w

    src = model.state_dict()
    sd = {}
    for name, w in src.items():
        if name.endswith("norm.weight"):
            sd[name] = torch.cat([w] * factor) / (factor if name == "model.norm.weight" else 1)
        elif name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            sd[name] = torch.cat([w] * factor, dim=1)
        else:  # every linear layer reads a repeated input and writes a repeated output
            sd[name] = rep(w, out=True, inp=True)
    for name, w in sd.items():
        if w.ndim == 2 and "embed" not in name and name != "lm_head.weight":
            w += noise * float(w.std()) * torch.randn(w.shape, generator=gen)
    new.load_state_dict(sd, strict=False)
    new.tie_weights()
    return new


def deepen_heads(model, head_dim: int, seed: int = 0, init: float = 0.02):
    """A copy of `model` whose attention heads are `head_dim` wide (a multiple m of the old width) and that computes
    the same function exactly. Why: key-conditioned retrieval compares keys in the slowly rotating RoPE pairs, and a
    32-wide head at theta 10k has only 5 pairs whose wavelength exceeds 2,000 tokens (64-wide: 12).
    How: the new head's RoPE pair i has frequency theta^(-2i/new), so old pair j (theta^(-2j/old)) is new pair
    m*j exactly; old q/k dims go there (q scaled by sqrt(m) for SDPA's 1/sqrt(head_dim)), the new pairs get random k
    and zero q (no score change, but q's gradient is not zero); the new value dims get random weights and zero o_proj
    columns (no output change, o_proj's gradient is not zero)."""
    conf = copy.deepcopy(model.config)
    old = conf.head_dim
    if head_dim == old:
        return model
    if head_dim % old:
        raise ValueError(f"head_dim {head_dim} is not a multiple of the model's {old}")
    m = head_dim // old
    conf.head_dim = head_dim
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(seed)
    half, nhalf = old // 2, head_dim // 2
    rot = torch.tensor([m * j for j in range(half)] + [nhalf + m * j for j in range(half)])  # old dim -> new dim
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for name, w in model.state_dict().items():
        if not name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")):
            continue
        if name.endswith("o_proj.weight"):  # (hidden, heads * old): columns per head, new value dims read as zero
            heads = w.shape[1] // old
            out = torch.zeros(w.shape[0], heads, head_dim)
            out[:, :, :old] = w.reshape(w.shape[0], heads, old)
            sd[name] = out.reshape(w.shape[0], heads * head_dim)
            continue
        heads = w.shape[0] // old
        rows = w.reshape(heads, old, w.shape[1])
        fresh = init * torch.randn(heads, head_dim, w.shape[1], generator=gen)
        if name.endswith("v_proj.weight"):
            fresh[:, :old] = rows
        else:
            if name.endswith("q_proj.weight"):
                fresh.zero_()
                rows = rows * math.sqrt(m)
            fresh[:, rot] = rows
        sd[name] = fresh.reshape(heads * head_dim, w.shape[1])
    new.load_state_dict(sd, strict=False)
    new.tie_weights()
    return new


def haystack_dirs(root: Path, count: int, seed: int, words: int = 2000) -> list[str]:
    """`count` folders, each one text file of corpus paragraphs in a seeded shuffled order (~`words` words).
    Why: RULER builds every haystack from the *first* words of its essays, so training rows with one source
    all share one haystack, and the model learned that text rather than retrieval (niah_single_2 95 on the
    training corpus, 55 on the essays). The held-out paragraphs are never used."""
    paras = list(corpus.paragraphs())
    out = []
    for k in range(count):
        folder = root / f"h{k:03d}"
        rng = np.random.default_rng([seed, k])
        chosen, n = [], 0
        for i in rng.permutation(len(paras)):
            chosen.append(paras[i])
            n += len(paras[i].split())
            if n >= words:
                break
        text = "\n\n".join(chosen)
        f = folder / "text.txt"
        if not f.is_file() or f.read_text(encoding="utf-8") != text:
            folder.mkdir(parents=True, exist_ok=True)
            f.write_text(text, encoding="utf-8")
        out.append(str(folder))
    return out


def _needle_pattern() -> re.Pattern:
    """RULER's needle sentence as a regex (groups: value kind, key, value), from the task's own template."""
    parts = re.split(r"\{(\w+)\}", ruler_niah.NEEDLE)  # literal, field, literal, field, ...
    fields = {"type_needle_v": r"(numbers|words|uuids)", "key": r"(.+?)", "value": r"([^\s.]+)"}
    return re.compile("".join(fields[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)))


RULER_NEEDLE = _needle_pattern()
RULER_QUESTION = ruler_niah.TEMPLATE.rsplit("\n", 1)[1] + ruler_niah.ANSWER_PREFIX  # RULER's question + answer prefix


class RulerRows:
    """RULER-format training rows: prompt (template + answer prefix) then the answer (references joined) + EOS.

    Two deliberate choices: multivalue answers come in the order their needles stand in the context (RULER's
    reference order is the draw order, which the text does not reveal, so a model trained on it learns to repeat
    one value; the score ignores order), and with `follow_ups` a NIAH row goes on after its EOS with up to that many
    single-key questions (RULER's wording, singular) about other needles of its context, each answer + EOS trained:
    several key lookups per forward instead of one. Follow-ups fill the room the row's 128-token answer budget
    leaves, plus 32 tokens per follow-up allowed (a follow-up takes ~65 tokens with a number, ~150 with a uuid), so
    positions reach at most native + 128 + 32 * follow_ups. Only rows with needles the first question did not ask
    get them (multikey_*). The first question is RULER's, unchanged."""

    def __init__(self, tokenizer, cfg: TinyBaseV2Config, haystacks: list[str] | None = None):
        self.tok, self.cfg = tokenizer, cfg
        mix = dict(cfg.ruler_mix)
        self.names = list(mix)
        w = np.array([mix[n] for n in self.names])
        self.p = w / w.sum()
        self.haystacks = haystacks or [None]

    def row(self, rng: np.random.Generator, step: int, index: int):
        """The `index`-th RULER row of step `step`: its content seed depends on (step, index) alone, so a batch can
        be built in any process, in any order, and comes out the same."""
        task = self.names[int(rng.choice(len(self.names), p=self.p))]
        gen = ruler.TOKENS_TO_GENERATE[task]
        length = int(rng.integers(self.cfg.min_ruler_length, self.cfg.native_length + 1)) + gen
        seed = TRAIN_SEED_BASE + step * 1000 + index % 1000
        hay = self.haystacks[int(rng.integers(len(self.haystacks)))]
        try:
            s = ruler.generate(task, self.tok, length, 1, seed=seed, essay_dir=hay)[0]
        except ValueError:
            return None
        joiner = " " if task == "fwe" else ", "
        outputs = list(s["outputs"])
        if task == "niah_multivalue":
            outputs.sort(key=lambda v: s["input"].find(f" is: {v}."))
        prompt = self.tok(s["input"] + s["answer_prefix"])["input_ids"]
        ids, labels = list(prompt), [-100] * len(prompt)
        self._answer(ids, labels, " " + joiner.join(outputs) + ".")
        if self.cfg.follow_ups > 0 and task.startswith("niah_"):
            self._follow_ups(rng, s["input"], set(outputs), ids, labels, length + 32 * self.cfg.follow_ups)
        return ids, labels

    def _answer(self, ids: list[int], labels: list[int], text: str) -> None:
        answer = self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        ids += answer
        labels += answer

    def _follow_ups(self, rng: np.random.Generator, context: str, answered: set[str], ids: list[int],
                    labels: list[int], limit: int) -> None:
        """Up to cfg.follow_ups more questions on keys with exactly one needle in `context` whose value is not in
        the first answer (else it could be copied from there), while the row stays within `limit` tokens."""
        found: dict[str, list[tuple[str, str]]] = {}
        for kind, key, value in RULER_NEEDLE.findall(context):
            found.setdefault(key, []).append((kind, value))
        keys = [k for k, v in found.items() if len(v) == 1 and v[0][1] not in answered]
        for i in rng.permutation(len(keys))[: self.cfg.follow_ups]:
            kind, value = found[keys[i]][0]
            text = "\n" + ruler_niah.singular(RULER_QUESTION).format(type_needle_v=kind[:-1], query=keys[i])
            q = self.tok(text, add_special_tokens=False)["input_ids"]
            a = self.tok(f" {value}.", add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
            if len(ids) + len(q) + len(a) > limit:
                return
            ids += q + a
            labels += [-100] * len(q) + a


def _batch_v2(sampler: DocSampler, ruler_rows: RulerRows, cfg: TinyBaseV2Config, step: int):
    rng = np.random.default_rng([cfg.seed, step])
    sampler.rng, rows, drawn = rng, [], 0
    while len(rows) < cfg.batch_size:
        u = rng.random()
        if u < cfg.mix_ruler:
            r = ruler_rows.row(rng, step, drawn)
            drawn += 1
            if r is not None:
                rows.append(r)
        elif u < cfg.mix_ruler + cfg.mix_passkey + cfg.mix_kv:
            length = int(rng.integers(cfg.min_doc_length, cfg.native_length + 1))
            rows.append(sampler.passkey_doc(length) if u < cfg.mix_ruler + cfg.mix_passkey else sampler.kv_doc(length))
        elif u < cfg.mix_ruler + cfg.mix_passkey + cfg.mix_kv + cfg.mix_binding + cfg.mix_repeat:
            length = int(rng.integers(cfg.min_binding_length, (cfg.max_binding_length or cfg.native_length) + 1))
            binding = u < cfg.mix_ruler + cfg.mix_passkey + cfg.mix_kv + cfg.mix_binding
            rows.append(sampler.binding_doc(length) if binding else sampler.repeat_doc(length))
        else:
            rows.append(sampler.text_doc(cfg.native_length))
    return pad_rows(rows, sampler.tok.pad_token_id)


def ruler_accuracy(model, tokenizer, length: int, num_samples: int, essay_dir: str | None, seed: int = 42,
                   tasks: tuple[str, ...] = tuple(RULER_MIX)) -> dict[str, float]:
    """RULER scores (0-100) of `model` at `length` on `tasks` (tasks that do not fit are left out)."""
    out = {}
    for task in tasks:
        try:
            samples = ruler.generate(task, tokenizer, length, num_samples, seed=seed, essay_dir=essay_dir)
        except ValueError:
            continue
        preds = greedy_generate(model, tokenizer, [s["input"] + s["answer_prefix"] for s in samples],
                                ruler.TOKENS_TO_GENERATE[task], 16)
        out[task] = ruler.score(task, preds, [s["outputs"] for s in samples])
    return out


class _Batches(torch.utils.data.IterableDataset):
    """The stage-2 batches of steps `start`..`stop`-1. With DataLoader workers, worker w builds steps start+w,
    start+w+W, ... and the loader hands them out round-robin, i.e. in step order; a batch depends on (seed, step)
    alone, so the batches are the same for any number of workers (tested). Why: on a GPU the model takes a batch in
    milliseconds and one process building RULER rows (~90k tokens/s on one core) would leave it idle."""

    def __init__(self, sampler: DocSampler, ruler_rows: RulerRows, cfg: TinyBaseV2Config, start: int, stop: int):
        super().__init__()
        self.sampler, self.ruler_rows, self.cfg, self.start, self.stop = sampler, ruler_rows, cfg, start, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start + w, self.stop, n):
            yield step, *_batch_v2(self.sampler, self.ruler_rows, self.cfg, step)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def batches(sampler: DocSampler, ruler_rows: RulerRows, cfg: TinyBaseV2Config, start: int, stop: int):
    """(step, ids, labels) for steps start..stop-1 in order, built by `cfg.workers` processes (0: this one)."""
    if cfg.workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are forked after tokenizer use
    return iter(torch.utils.data.DataLoader(
        _Batches(sampler, ruler_rows, cfg, start, stop), batch_size=None, num_workers=cfg.workers,
        worker_init_fn=_one_thread if cfg.workers else None, pin_memory=cfg.device.startswith("cuda"),
        prefetch_factor=4 if cfg.workers else None, persistent_workers=False,
        multiprocessing_context="fork" if cfg.workers else None))  # DocSampler holds lambdas: fork, not spawn


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
    state = json.loads((work / "state.json").read_text()) if (work / "state.json").is_file() else None
    if state:
        model.load_state_dict(load_file(str(work / "model.safetensors")), strict=False)
        model.tie_weights()
    model.to(cfg.device)  # before the optimizer, so a resumed optimizer's state is cast to the model's device
    opt, sched = optimizer(model, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule)
    # plan: the steps this run takes (fitted once to cfg.minutes, never above cfg.steps); spent: wall seconds so far
    history, start, plan = [], 0, {"steps": cfg.steps, "fitted": None, "spent": 0.0, "budget_stop": False}
    if state:
        opt.load_state_dict(torch.load(work / "opt.pt", weights_only=True, map_location=cfg.device))
        sched.load_state_dict(state["sched"])
        history, start = state["history"], state["step"]
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
        with atomic_dir(work) as tmp:  # weights, optimizer and step replaced together, never one without the others
            sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            save_file(sd, str(tmp / "model.safetensors"))
            torch.save(opt.state_dict(), tmp / "opt.pt")
            write_json(tmp / "state.json", {"step": done, "sched": sched.state_dict(), "history": history,
                                            "fitted_steps": plan["fitted"], "seconds": round(clock() - t0, 1)})

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
