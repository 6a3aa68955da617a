"""The tiny base's tokenizer: byte-level BPE trained on the Python corpus and the prompt formats it must read."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from longrecipe.base import corpus
from longrecipe.tasks import passkey
from longrecipe.tasks.kv_format import KV_INTRO, NOISE

SPECIAL = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>"}


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

