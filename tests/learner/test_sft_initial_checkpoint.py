"""The SFT driver's starting weights for a pretrained backbone: built from ``model.path``, saved
as an aurora_rl checkpoint that every rank loads (only trainable tensors stored)."""

from __future__ import annotations

import torch

from aurora_rl.config.schema import DataConfig
from aurora_rl.model.checkpoint import load_policy
from learner.sft_job import initial_checkpoint
from tests.model.backbone_fixtures import model_config
from tests.model.videollama2_reference import write_videollama2_av


def test_pretrained_backbone_becomes_a_loadable_checkpoint_and_is_then_used_as_is(tmp_path):
    folder = write_videollama2_av(tmp_path / "models", seed=0)
    model = model_config("videollama2-av", folder)
    data = DataConfig(num_frames=4, image_size=56, mask_size=32)
    init = initial_checkpoint(model, data, corpus=[], folder=tmp_path / "init", seed=0)
    assert init == tmp_path / "init"
    policy, tok, cfg, shape = load_policy(init)
    assert cfg.backbone == "videollama2-av" and shape.audio_features == "kaldi_fbank" and shape.image_size == 56
    assert "[SEG]" in tok.get_vocab()
    assert policy.base_lm.get_input_embeddings().weight.dtype == torch.float32
    model.path = str(init)  # a later stage starting from this checkpoint reuses it
    assert initial_checkpoint(model, data, corpus=[], folder=tmp_path / "other", seed=0) == init
