"""Additive token counting: equal to whole-text tokenization for every kind of tokenizer it certifies, refused
for the kinds it cannot, and RULER, NIAH and passkey samples identical to those fitted with whole-text counts."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from longrecipe.base import corpus
from longrecipe.tasks import counting, niah, passkey, ruler
from longrecipe.tasks.counting import _KNOWN_SPLITS
from longrecipe.tasks.ruler import common

ALPHABET = "aZ7.,:;!?'\"-=()é—’“ﬁ¨\u0301 \n\t"

def _train(model, pre=None, norm=None, trainer=None, after=None) -> PreTrainedTokenizerFast:
    tok = Tokenizer(model)
    tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre, decoders.ByteLevel()
    tok.train_from_iterator(list(corpus.paragraphs()[:800]) + [ALPHABET], trainer=trainer or trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>"], show_progress=False))
    if after:
        after(tok)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")

def _sentencepiece_without_pre_tokenizer(tok: Tokenizer) -> None:
    """Llama-2's layout: spaces marked by the normalizer, no pre-tokenizer, a vocabulary learned per word."""
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None

BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False)

CERTIFIED = {
    "gpt2 byte-level": lambda: _train(models.BPE(), BYTE_LEVEL),
    "llama3 split": lambda: _train(models.BPE(), pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_KNOWN_SPLITS[1]), "isolated"), pre_tokenizers.ByteLevel(use_regex=False)])),
    "qwen2 split + NFC": lambda: _train(models.BPE(), pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_KNOWN_SPLITS[2]), "isolated"), pre_tokenizers.ByteLevel(use_regex=False)]),
        normalizers.NFC()),
    "NFKC byte-level (ASCII junctions)": lambda: _train(models.BPE(), BYTE_LEVEL, normalizers.NFKC()),
    "metaspace unigram": lambda: _train(models.Unigram(), pre_tokenizers.Metaspace(), trainer=trainers.UnigramTrainer(
        vocab_size=600, special_tokens=["<s>"], show_progress=False, unk_token="<s>")),
    "llama2 '▁' BPE, no pre-tokenizer": lambda: _train(
        models.BPE(unk_token="<s>"), pre_tokenizers.Metaspace(), after=_sentencepiece_without_pre_tokenizer),
}

REFUSED = {
    "BPE across words": (lambda: _train(models.BPE(unk_token="<s>"), None, normalizers.Replace(" ", "▁")),
                         "crosses a word start"),
    "unknown split rule": (lambda: _train(models.BPE(), pre_tokenizers.Split(Regex(r"\w+ ?"), "isolated")),
                           "unrecognised Split"),
    "lstrip added token": (lambda: _with_lstrip(_train(models.BPE(), BYTE_LEVEL)), "depends on the spaces"),
}

def _with_lstrip(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken

    tok.add_tokens([AddedToken("<mask>", lstrip=True)])
    return tok

@pytest.fixture(scope="module", params=sorted(CERTIFIED))
def certified(request):
    return CERTIFIED[request.param]()

texts = st.text(alphabet=ALPHABET, max_size=60)

def _generate(task, tok, length, exact=False, n=3, seed=11) -> list[dict] | str:
    """The samples, or the one-line error when the task's template does not fit the length."""
    try:
        with counting.exact_counts() if exact else contextlib.nullcontext():
            return ruler.generate(task, tok, length, n, seed=seed)
    except ValueError as e:
        return str(e)


def test_the_embedded_tokenizer_is_certified(tiny):
    assert counting.counter(tiny[1]).refusal is None


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_certified_counts_equal_whole_text_tokenization(certified, data):
    c = counting.counter(certified)
    assert c.refusal is None, c.refusal
    text = data.draw(texts)
    assert c.count(text) == len(certified(text)["input_ids"])
    at = data.draw(st.integers(0, len(text)))
    with counting.exact_counts():
        want = c.position(text, at)
    assert c.position(text, at) == want


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_tokenizers_count_whole_texts(name):
    make, reason = REFUSED[name]
    tok = make()
    c = counting.counter(tok)
    assert c.refusal is not None and reason in c.refusal
    assert not c.additive
    text = "One of the special magic numbers is: 1234567. <mask> The grass is green."
    assert c.count(text) == len(tok(text)["input_ids"])


def test_nfkc_keeps_non_ascii_neighbours_inside_pieces():
    """NFKC turns U+00A8 into ' \u0308': a space next to it is no junction, so the two words stay one piece."""
    tok = CERTIFIED["NFKC byte-level (ASCII junctions)"]()
    c = counting.counter(tok)
    assert c.junctions == "ascii"
    assert c.pieces("a \u00a8b c") == ["a \u00a8b", "c"]
    assert c.count("x \u00a8 y") == len(tok("x \u00a8 y")["input_ids"])


def test_long_prompts_count_exactly_on_every_path(tiny):
    """Sentence sums (essays), word sums (lists) and regex junctions (doubled spaces) on 10k-token texts."""
    tok = tiny[1]
    c = counting.counter(tok)
    essay = " ".join(common.essay_words(None)[:6000])
    numbered = " ".join(f"{i}. word{i % 37}" for i in range(3000))
    for text in (f"Read this.\n{essay}\nWhat?", numbered, f"A  B {essay[:5000]} \nC", "", " ", "x"):
        assert c.count(text) == len(tok(text)["input_ids"])
        assert c.count(text) == len(tok(text)["input_ids"])  # the memoised answer too


@pytest.mark.parametrize("length", [512, 2048])
def test_ruler_samples_identical_to_whole_text_fitting(tiny, length):
    """Every task fitted with additive counts = fitted with whole-text tokenization (inputs, lengths, answer
    positions and depths byte for byte)."""
    tok = tiny[1]
    fitted = 0
    for task in (t for t in ruler.TASKS if not t.startswith("qa")):
        fast, slow = _generate(task, tok, length), _generate(task, tok, length, exact=True)
        assert fast == slow, task
        fitted += isinstance(fast, list)
    assert fitted >= (8 if length == 512 else 11)


def test_ruler_samples_identical_with_a_llama3_style_tokenizer():
    tok = CERTIFIED["llama3 split"]()
    for task in ("niah_single_2", "niah_multikey_3", "vt", "fwe"):
        fast = _generate(task, tok, 1024, n=2, seed=5)
        assert isinstance(fast, list) and fast == _generate(task, tok, 1024, exact=True, n=2, seed=5), task


def test_essay_sentences_of_any_prefix_match_splitting_it():
    words = common.essay_words(None)
    for n in [0, 1, 2, 3, 17, 250, 4096, len(words) - 1, len(words), len(words) + 7]:
        text = " ".join((words * 2)[:n])
        assert common.essay_sentences(None, n) == tuple(common.split_sentences(text)), n


def test_niah_grid_lengths_identical_to_whole_text_counts(tiny):
    tok = tiny[1]
    fast = niah.generate(tok, lengths=[300, 700], depths=[0, 37.5, 100])
    with counting.exact_counts():
        assert fast == niah.generate(tok, lengths=[300, 700], depths=[0, 37.5, 100])


def test_passkey_samples_identical_to_whole_text_counts(tiny):
    tok = tiny[1]
    fast = passkey.generate(tok, 1024, 6, seed=4)
    with counting.exact_counts():
        assert fast == passkey.generate(tok, 1024, 6, seed=4)


def test_chat_wrapped_samples_identical_to_whole_text_counts(tiny_dir):
    """Special tokens of a chat template sit inside pieces: still exact."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    tok.chat_template = ("{% for m in messages %}<|bos|>{{ m['content'] }}<|eos|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|bos|>{% endif %}")
    for task in ("niah_single_1", "vt"):
        fast = ruler.generate(task, tok, 1024, 2, seed=9, chat_template=True)
        assert fast[0]["input"].startswith("<|bos|>")
        with counting.exact_counts():
            assert fast == ruler.generate(task, tok, 1024, 2, seed=9, chat_template=True), task


def test_caches_are_bounded_and_stay_exact(tiny, monkeypatch):
    """Random content (uuids, numbers) never repeats: past the cap the caches restart, counts stay exact."""
    import random
    import string

    monkeypatch.setattr(counting, "_MAX_CACHED", 50)
    tok = tiny[1]
    c = counting.TokenCounter(tok)
    rng = random.Random(0)
    for _ in range(30):
        words = ["".join(rng.choices(string.ascii_lowercase, k=5)) for _ in range(40)]
        text = "Start. " + ". ".join(" ".join(words[j : j + 8]) for j in range(0, 40, 8)) + " end"
        assert c.count(text) == len(tok(text)["input_ids"])
    assert len(c._tails) <= 50 + 41 and len(c._sentences) <= 50 + 5
