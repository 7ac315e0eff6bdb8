"""Text pretraining of the tiny LLM: the stand-in for a language model that already knows the words.

A released LLM has read every class name of Ref-AVS, in every kind of sentence, before stage 1;
its test_u (unseen classes) is unseen only by the referring task. The tiny backbone starts
random, so a class that is never an answer in training is a word its output layer never learned
to write. This pass reads text written from random scenes over **every** class of the synthetic
catalog (no media, no benchmark clip): the prompt of a referring expression and its
chain-of-thought answer, and (one text in ``list_share``) the answer naming every object
(``scene_cot.list_cot``). Next-token CE on every token; the media encoders, SAM and the
projector are left as they are.

Only the text is known beforehand, as for a real LLM: which object an unseen class is in a
video is learned (or not) from the benchmark's own clips.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from aurora_rl.config.schema import TextPretrainConfig
from aurora_rl.data.synthetic.catalog import CLASSES
from aurora_rl.data.synthetic.expressions import (audio_expressions, audio_visual_expressions, null_expressions,
                                                  visual_expressions)
from aurora_rl.data.synthetic.scene import sample_scene
from aurora_rl.data.synthetic.writer import object_facts
from aurora_rl.prompts.answer_format import AUDIO, VIDEO, build_prompt
from aurora_rl.prompts.scene_cot import EVERY_OBJECT, list_cot, scene_cot


def text_prompt(expression: str) -> str:
    """The user prompt without its media placeholders (there are no media here)."""
    return " ".join(w for w in build_prompt(expression).split() if w not in (VIDEO, AUDIO))


def scene_text(rng: np.random.Generator, num_frames: int, list_share: float) -> str:
    """One pretraining text: a random scene over every class, one expression, its answer."""
    pool = list(CLASSES.values())
    scene = sample_scene(rng, pool, size=64, num_frames=num_frames)
    objects = object_facts(scene)
    if rng.random() < list_share:
        return f"{text_prompt(EVERY_OBJECT)} {list_cot({'objects': objects})}"
    kinds = [k for k in (audio_expressions(scene), visual_expressions(scene), audio_visual_expressions(scene),
                         null_expressions(scene, pool)) if k]
    options = kinds[int(rng.integers(len(kinds)))]
    expression = options[int(rng.integers(len(options)))]
    target = None if expression.target is None else scene.objects[expression.target].cls.name
    facts = {"uid": "text", "objects": objects, "expression": expression.text, "target_class": target}
    return f"{text_prompt(expression.text)} {scene_cot(facts).answer}"


def text_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L] (eos appended), attention mask [B, L], labels [B, L] (-100 on pads)."""
    seqs = [tokenizer(t, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for t in texts]
    n = max(map(len, seqs))
    ids = torch.full((len(seqs), n), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
    return ids, attention, ids.masked_fill(attention == 0, -100)


def pretrain_text(llm: torch.nn.Module, tokenizer, cfg: TextPretrainConfig, seed: int, num_frames: int = 10,
                  log_every: int = 500) -> dict:
    """Train ``llm`` (a causal LM) in place on ``cfg.steps`` fresh batches of scene texts whose
    onset frames range over ``num_frames`` (the clips' length).

    Returns {"steps", "first_loss", "last_loss", "seconds"}. Seeded: the same seed gives the
    same texts and the same weights.
    """
    rng = np.random.default_rng([seed, 7])
    params = [p for p in llm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    unknown = tokenizer.unk_token_id
    was_training = llm.training
    llm.train()
    started = time.monotonic()
    first = last = float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(1, cfg.steps + 1):
            ids, attention, labels = text_batch(
                tokenizer, [scene_text(rng, num_frames, cfg.list_share) for _ in range(cfg.batch_size)])
            if unknown is not None and bool((ids == unknown).any()):
                raise ValueError("text pretraining wrote a word the tokenizer does not hold; the tokenizer must be "
                                 "built over synthetic_words() and scene_cot.COT_WORDS")
            loss = llm(input_ids=ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            last = float(loss.detach())
            first = last if step == 1 else first
            if step % log_every == 0 or step == cfg.steps:
                rate = step / (time.monotonic() - started)
                print(f"[text-pretrain] step {step}/{cfg.steps} loss {last:.4f} | {rate:.1f} steps/s | "
                      f"ETA {(cfg.steps - step) / rate:.0f} s", flush=True)
    llm.train(was_training)
    return {"steps": cfg.steps, "first_loss": first, "last_loss": last, "seconds": time.monotonic() - started}
