"""Text pretraining of the tiny LLM (`model.tiny.text_pretrain`): texts over every class, next-token CE."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from aurora_rl.config.schema import DataConfig, LoraConfig, ModelConfig, TextPretrainConfig
from aurora_rl.data.synthetic import CLASSES, UNSEEN_CLASSES, synthetic_words
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import load_policy
from aurora_rl.model.factory import build_policy
from aurora_rl.model.text_pretrain import pretrain_text, scene_text, text_batch, text_prompt
from aurora_rl.model.tokenizer import build_word_tokenizer, words_of
from aurora_rl.prompts.answer_format import REFLECT_TRIGGER, build_prompt, parse_answer
from aurora_rl.prompts.scene_cot import COT_WORDS, EVERY_OBJECT
from learner.sft_job import initial_checkpoint

UNSEEN = [c.name for c in UNSEEN_CLASSES]


@pytest.fixture(scope="module")
def tokenizer():  # the words initial_checkpoint gives a tiny policy with an empty corpus
    return build_word_tokenizer(set(synthetic_words()) | set(COT_WORDS) | words_of([REFLECT_TRIGGER, build_prompt("")]))


def test_texts_range_over_every_class_and_read_like_answers(tokenizer):
    rng = np.random.default_rng(0)
    texts = [scene_text(rng, 10, list_share=0.2) for _ in range(400)]
    assert {c for c in CLASSES if any(f" {c} " in t for t in texts)} == set(CLASSES)
    listing = [t for t in texts if t.startswith(text_prompt(EVERY_OBJECT))]
    assert 40 < len(listing) < 130
    for t in texts:
        assert "<video>" not in t and tokenizer.unk_token_id not in tokenizer(t).input_ids
        answer = t[t.index("step 1 :"):]
        assert t in listing or parse_answer(answer).well_formed
    targets = {parse_answer(t[t.index("step 1 :"):]).target_class for t in texts if t not in listing}
    assert {c.name for c in UNSEEN_CLASSES} <= targets  # unseen classes are answers here, as in any LM's text


def held_out_loss(llm, tokenizer, texts: list[str]) -> float:
    ids, attention, labels = text_batch(tokenizer, texts)
    with torch.no_grad():
        return float(llm(input_ids=ids, attention_mask=attention, labels=labels).loss)


def tiny() -> ModelConfig:
    return ModelConfig(lora=LoraConfig(enabled=False))  # as configs/tiny: the whole LLM is trained


def test_pretraining_learns_the_texts_and_is_seeded(tokenizer):
    cfg = TextPretrainConfig(steps=40, batch_size=8)
    a, _ = build_policy(tiny(), MediaShape(), seed=0, tokenizer=tokenizer)
    rng = np.random.default_rng(99)
    unseen = [t for t in (scene_text(rng, 10, 0.2) for _ in range(80)) if any(f" {c} " in t for c in UNSEEN)][:16]
    before = held_out_loss(a.llm, tokenizer, unseen)
    report = pretrain_text(a.llm, tokenizer, cfg, seed=0)
    assert report["steps"] == 40 and report["last_loss"] < report["first_loss"] - 2.0
    assert held_out_loss(a.llm, tokenizer, unseen) < before - 2.0  # fresh texts with unseen classes read well too
    b, _ = build_policy(tiny(), MediaShape(), seed=0, tokenizer=tokenizer)
    pretrain_text(b.llm, tokenizer, dataclasses.replace(cfg, steps=3), seed=0)
    c, _ = build_policy(tiny(), MediaShape(), seed=0, tokenizer=tokenizer)
    pretrain_text(c.llm, tokenizer, dataclasses.replace(cfg, steps=3), seed=0)
    for (name, x), y in zip(b.llm.named_parameters(), c.llm.parameters()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.llm.lm_head.weight, b.llm.lm_head.weight)


def test_a_tokenizer_without_the_catalog_words_is_refused():
    small = build_word_tokenizer(COT_WORDS)
    policy, _ = build_policy(tiny(), MediaShape(), seed=0, tokenizer=small)
    with pytest.raises(ValueError, match="does not hold; the tokenizer must be built over synthetic_words"):
        pretrain_text(policy.llm, small, TextPretrainConfig(steps=1, batch_size=4), seed=0)


def test_initial_checkpoint_saves_the_pretrained_llm_and_its_report(tmp_path):
    model = tiny()
    model.tiny.text_pretrain.steps = 2
    init = initial_checkpoint(model, DataConfig(), corpus=[], folder=tmp_path / "init", seed=0)
    report = json.loads((init / "text_pretraining.json").read_text())
    assert report["steps"] == 2
    plain = initial_checkpoint(tiny(), DataConfig(), corpus=[], folder=tmp_path / "plain", seed=0)
    assert not (plain / "text_pretraining.json").exists()
    pretrained, *_ = load_policy(init)
    random, *_ = load_policy(plain)
    assert not torch.equal(pretrained.llm.lm_head.weight, random.llm.lm_head.weight)
    assert torch.equal(pretrained.vision.state_dict()[next(iter(pretrained.vision.state_dict()))],
                       random.vision.state_dict()[next(iter(random.vision.state_dict()))])  # only the LLM is trained


def test_configs_that_would_lose_the_pretraining_are_refused():
    from aurora_rl.config.loader import ConfigError, build

    with pytest.raises(ConfigError, match="lora.*adapters: set lora.enabled=false"):
        build(ModelConfig, {"tiny": {"text_pretrain": {"steps": 10}}}, {}, "<model>")
    with pytest.raises(ConfigError, match="has read its text already"):
        build(ModelConfig, {"backbone": "qwen2.5-omni", "path": "x", "tiny": {"text_pretrain": {"steps": 10}}}, {},
              "<model>")
    assert build(ModelConfig, {"lora": {"enabled": False}, "tiny": {"text_pretrain": {"steps": 10}}}, {},
                 "<model>").tiny.text_pretrain.steps == 10
