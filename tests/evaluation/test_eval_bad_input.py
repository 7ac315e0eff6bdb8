"""``aurora-rl eval`` with bad input: options refused at parsing naming the option, a clip that
cannot be read failing the evaluation by name (the default) or skipped and listed (``--on-bad-clip
skip``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aurora_rl.cli import main
from aurora_rl.config.schema import MetricsConfig
from aurora_rl.data import DataError, RefAVSDataset
from aurora_rl.data import refavs_layout as layout
from aurora_rl.evaluation.clip_loading import load_clips
from aurora_rl.evaluation.scoring import EvaluationWriter, results_table
from tests.data.layout_fixtures import VIDS, write_refavs_fixture

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PIANO = "-1HyqEM_VwM_137000_147000_piano_1@2"  # train, line 2 of the fixture: VIDS[0], fid 0


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_samples_below_one_is_refused_at_parsing(value, capsys):
    """0 evaluated nothing and ended in a KeyError; -1 dropped the last row of every split."""
    with pytest.raises(SystemExit) as e:
        main(["eval", "--ckpt", "c", "--data", "d", "--max-samples", value])
    assert e.value.code == 2
    assert "argument --max-samples: expected an integer >= 1, got" in capsys.readouterr().err


def test_unknown_splits_are_refused_naming_the_option_and_the_valid_ones(tmp_path, capsys):
    run = subprocess.run([sys.executable, "-m", "aurora_rl.cli", "eval", "--ckpt", str(tmp_path), "--data",
                          str(tmp_path), "--splits", "test_s,bogus"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert ("argument --splits: unknown split(s) 'bogus' for layout refavs "
            "(valid: train, val, test_s, test_u, test_n)") in run.stderr
    assert main(["eval", "--ckpt", "c", "--data", "d", "--layout", "avsbench-s4", "--splits", "test_s"]) == 2
    assert "unknown split(s) 'test_s' for layout avsbench-s4 (valid: train, val, test)" in capsys.readouterr().err
    assert main(["eval", "--ckpt", "c", "--data", "d", "--splits", ","]) == 2
    assert "argument --splits: no split given" in capsys.readouterr().err


def test_an_eval_config_with_an_unknown_split_is_a_config_error(capsys):
    code = main(["eval", "--config", str(CONFIGS / "tiny" / "eval.yaml"), "data.eval_splits=[test_s, bogus]"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "config error:" in err and "data.eval_splits: unknown split(s) 'bogus' for layout refavs" in err


def break_piano_mask(root: Path) -> Path:
    path = layout.mask_path(root, VIDS[0], 0, 6)
    path.write_bytes(b"\x89PNG not really")
    return path


def test_a_clip_that_cannot_be_read_fails_by_default_and_is_a_skip_record_with_skip(tmp_path):
    root = write_refavs_fixture(tmp_path / "refavs")
    bad = break_piano_mask(root)
    dataset = RefAVSDataset(root, "train", image_size=16, mask_size=8)
    with pytest.raises(DataError, match=str(bad)):
        load_clips(dataset, [0, 1], "train")
    kept, clips, skipped = load_clips(dataset, [0, 1], "train", "skip")
    assert kept == [1] and [c.row for c in clips] == [3]
    assert [(s["index"], s["uid"], s["row"], s["split"]) for s in skipped] == [
        (0, "-1HyqEM_VwM_137000_147000_piano_1", 2, "train")]
    assert str(bad) in skipped[0]["skipped"]


def test_the_writer_lists_skipped_clips_and_a_split_of_none_read_has_a_row(tmp_path):
    gt = np.zeros((2, 8, 8), dtype=np.uint8)
    read = {"index": 1, "uid": "v_dog_1", "row": 3, "split": "train", "expression": "the dog .", "kind": None,
            "text": "garbage", "gt_class": None, "is_null": False, "mask_probs": gt.astype(np.float16), "gt_masks": gt}
    skip = {"index": 0, "sample": 0, "uid": "v_cat_1", "row": 2, "split": "train", "skipped": "x.png: cannot decode"}
    with EvaluationWriter(MetricsConfig(), tmp_path) as writer:
        writer.add("train", [skip, read])
        writer.add("val", [dict(skip, row=5, split="val")])
    results = writer.results()
    assert results["train"]["clips"] == 1 and results["train"]["skipped"] == [
        {"key": "v_cat_1@2", "error": "x.png: cannot decode"}]
    assert results["val"]["clips"] == 0 and len(results["val"]["skipped"]) == 1
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 1  # only what was evaluated
    table = results_table(results)
    assert "2 clip(s) skipped" in table and "- train v_cat_1@2: x.png: cannot decode" in table


def test_eval_on_bad_clip_skip_evaluates_the_rest_and_lists_what_it_skipped(tmp_path, capsys):
    """The whole command, through the baseline that needs no model (the same writer and loader)."""
    root = write_refavs_fixture(tmp_path / "refavs")
    bad = break_piano_mask(root)
    argv = ["eval", "--ckpt", "largest-object", "--data", str(root), "--splits", "train,test_s"]
    assert main([*argv, "--out", str(tmp_path / "fail")]) == 1
    err = capsys.readouterr().err
    assert f"aurora-rl: error: {bad}: cannot decode image" in err

    assert main([*argv, "--out", str(tmp_path / "skip"), "--on-bad-clip", "skip"]) == 0
    out = capsys.readouterr().out
    assert "1 clip(s) skipped" in out and f"- train {PIANO}: {bad}: cannot decode image" in out
    results = json.loads((tmp_path / "skip" / "results.json").read_text())
    assert results["train"]["clips"] == 1 and results["test_s"]["clips"] == 1
    assert [s["key"] for s in results["train"]["skipped"]] == [PIANO] and "skipped" not in results["test_s"]
    assert str(bad) in (tmp_path / "skip" / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_evaluation_actors_skip_a_clip_that_cannot_be_read_and_list_it(ray_node, tmp_path):
    """The vLLM path: each actor returns a skip record for the clip, the driver lists it."""
    from actors.eval_pool import evaluate_checkpoint
    from aurora_rl.config.schema import DataConfig
    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import save_policy
    from tests.model.tiny_policy import make_policy, tiny_model_config

    root = write_refavs_fixture(tmp_path / "refavs")
    bad = break_piano_mask(root)
    policy, tok = make_policy(seed=5)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "ckpt")
    data = DataConfig(root=str(root), mask_size=64)
    with pytest.raises(Exception, match=re.escape(str(bad))):  # the actor's DataError, as Ray raises it
        evaluate_checkpoint(str(ckpt), data, ["train"], tmp_path / "fail", 1, MetricsConfig(), max_new_tokens=8)
    results = evaluate_checkpoint(str(ckpt), data, ["train", "val"], tmp_path / "skip", 2, MetricsConfig(),
                                  max_new_tokens=8, on_bad_clip="skip")
    assert results["train"]["clips"] == 1 and results["val"]["clips"] == 1
    skipped = results["train"]["skipped"]
    assert [s["key"] for s in skipped] == [PIANO] and str(bad) in skipped[0]["error"]
    assert json.loads((tmp_path / "skip" / "results.json").read_text())["train"]["skipped"] == skipped
