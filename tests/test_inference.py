"""``aurora-rl infer`` on a synthetic clip: reasoning text, one mask PNG per frame, an overlay."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aurora_rl.cli import main
from aurora_rl.data import refavs_layout as layout
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import save_policy
from tests.model.tiny_policy import make_policy, tiny_model_config


def test_infer_writes_masks_overlay_and_answer(tmp_path, synthetic_root):
    policy, tok = make_policy()
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 32, 64), tmp_path / "ckpt")
    row = next(r for r in layout.read_metadata(synthetic_root) if r.split == "test_s")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "aurora_rl.cli", "infer", "--ckpt", str(ckpt),
         "--frames", str(synthetic_root / "media" / row.vid / "frames"),
         "--audio", str(layout.audio_path(synthetic_root, row.vid)), "--text", row.exp,
         "--out", str(out), "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    answer = (out / "answer.txt").read_text().strip()
    assert answer and answer in run.stdout
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 10
    frame = Image.open(synthetic_root / "media" / row.vid / "frames" / "0.jpg")
    for m in masks:
        img = Image.open(m)
        assert img.size == frame.size
        if "[SEG]" not in answer:  # an untrained model rarely emits [SEG]: then every mask is empty
            assert not np.asarray(img).any()
    overlay = Image.open(out / "overlay.png")
    assert overlay.width > 800 and overlay.height > 400


def test_infer_names_a_missing_frames_folder(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "aurora_rl.cli", "infer", "--ckpt", str(tmp_path), "--frames", str(tmp_path / "nope"),
         "--audio", "x.wav", "--text", "the dog ."], capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "aurora-rl: error:" in run.stderr and "Traceback" not in run.stderr
    assert "aurora_model.json" in run.stderr or "nope" in run.stderr


@pytest.mark.parametrize("text", ["", "   "])
def test_infer_refuses_an_empty_expression_at_parsing(tmp_path, text, capsys):
    with pytest.raises(SystemExit) as e:
        main(["infer", "--ckpt", str(tmp_path), "--frames", str(tmp_path), "--audio", "x.wav", "--text", text])
    assert e.value.code == 2
    assert "argument --text: the referring expression is empty" in capsys.readouterr().err


def test_infer_refuses_fewer_frames_than_the_checkpoint_takes_naming_folder_and_count(tmp_path, synthetic_root,
                                                                                      capsys):
    policy, tok = make_policy()
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 32, 64), tmp_path / "ckpt")
    row = next(r for r in layout.read_metadata(synthetic_root) if r.split == "test_s")
    frames = tmp_path / "three"
    frames.mkdir()
    for t in range(3):
        shutil.copy(layout.frame_path(synthetic_root, row.vid, t), frames / f"{t}.jpg")
    code = main(["infer", "--ckpt", str(ckpt), "--frames", str(frames),
                 "--audio", str(layout.audio_path(synthetic_root, row.vid)), "--text", row.exp])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"aurora-rl: error: {frames}: 3 image files, the checkpoint takes 10 frames" in err
