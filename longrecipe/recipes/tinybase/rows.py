"""Training rows of the tiny base: stage-1 documents (passkey, key-value, text), stage-2 rows (RULER formats,
key binding, repetition) and the batches, built in any number of processes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from longrecipe.base import corpus
from longrecipe.recipes.tinybase.config import TRAIN_SEED_BASE, TinyBaseConfig, TinyBaseV2Config
from longrecipe.tasks import passkey, ruler
from longrecipe.tasks.kv_format import KV_INTRO, KV_NEEDLE, KV_QUESTION, NOISE, RULER_NEEDLE, RULER_QUESTION
from longrecipe.tasks.ruler import common as ruler_common
from longrecipe.tasks.ruler import ruler_niah


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

