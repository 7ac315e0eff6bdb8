"""The tiny backbone's word-level tokenizer, built locally from the words of a corpus.

Text is split on whitespace; every word of the corpus gets an id; anything else is
``<unk>``. Special tokens: ``<pad> <unk> <s> </s>``, the media placeholders ``<video>``
``<audio>`` and ``[SEG]``. Saved with the checkpoint as a standard ``tokenizer.json`` that
transformers and vLLM load like any fast tokenizer.
"""

from __future__ import annotations

from typing import Iterable

from aurora_rl.prompts.answer_format import AUDIO, FORMAT_WORDS, SEG, VIDEO

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", VIDEO, AUDIO, SEG]


def build_word_tokenizer(words: Iterable[str]):
    """A ``PreTrainedTokenizerFast`` over ``words`` plus the format words and special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_words = list(dict.fromkeys([*SPECIAL_TOKENS, *FORMAT_WORDS, *sorted(set(words))]))
    vocab = {w: i for i, w in enumerate(vocab_words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=[VIDEO, AUDIO, SEG],
    )
    return tok


def words_of(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in t.split()}
