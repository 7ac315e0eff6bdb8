"""Evaluation: sharding does not change the table; the table equals the metrics on the saved predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actors.eval_pool import evaluate_checkpoint
from aurora_rl.config.schema import DataConfig, MetricsConfig
from aurora_rl.evaluation.scoring import probs_to_logits
from aurora_rl.metrics.refavs_metrics import OFFICIAL, RefAVSEvaluator
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import save_policy
from tests.model.tiny_policy import make_policy, tiny_model_config

SPLITS = ["test_s", "test_u", "test_n"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_or_two_actors_same_table_equal_to_metrics_on_the_predictions(ray_node, synthetic_root, tmp_path):
    """The streamed evaluation (scored and written chunk by chunk) gives the table of the official
    metrics over all its predictions at once, whatever the number of actors and the chunks: one
    actor through ``evaluate_checkpoint``, two (its pool and writer, in chunks of 2 clips) whose
    predictions are also held and scored at once."""
    from actors.eval_pool import EvalPool
    from aurora_rl.data import build_dataset
    from aurora_rl.evaluation.scoring import EvaluationWriter
    from aurora_rl.report.eval_outputs import load_stage_eval

    policy, tok = make_policy(seed=5)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "ckpt")
    data = DataConfig(root=str(synthetic_root), max_samples=5)
    one = evaluate_checkpoint(str(ckpt), data, SPLITS, tmp_path / "one", 1, MetricsConfig(), max_new_tokens=12)
    held = {s: [] for s in SPLITS}
    with EvaluationWriter(MetricsConfig(), tmp_path / "two") as writer:
        with EvalPool(ckpt, data, tmp_path / "two", 2, max_new_tokens=12) as pool:
            for s in SPLITS:
                for part in pool.stream(s, range(len(build_dataset(data, s))), print, "eval", chunk=2):
                    writer.add(s, part)
                    held[s] += part
    two = writer.results()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert [one[s]["clips"] for s in SPLITS] == [5, 5, 5]  # every row, once
    direct = RefAVSEvaluator(OFFICIAL)
    for split in SPLITS:
        assert [p["index"] for p in held[split]] == list(range(5))  # row order, chunk by chunk
        for p in held[split]:
            direct.add(split, probs_to_logits(p["mask_probs"]), p["gt_masks"])
    summary = direct.summary()
    for split, key in (("test_s", "J"), ("test_s", "F"), ("test_n", "S"), ("mix", "J")):
        assert summary[split][key] == pytest.approx(one[split][key], abs=1e-12)
    assert (tmp_path / "one" / "results.md").read_text().count("|") > 10
    assert len((tmp_path / "one" / "samples.jsonl").read_text().splitlines()) == 15
    saved = load_stage_eval(tmp_path / "one").predictions("test_s")  # the overlays' masks, p > 0.5
    first = held["test_s"][0]
    assert np.array_equal(saved["masks"][0], first["mask_probs"].astype(np.float32) > 0.5)
    assert np.array_equal(saved["gt"][0], first["gt_masks"] > 0) and len(saved["keys"]) == 5


def test_probabilities_back_to_logits_keep_every_threshold_decision():
    probs = np.array([0.0, 0.3, 0.4, 0.4001, 0.5, 0.9, 1.0], dtype=np.float16)
    logits = probs_to_logits(probs)
    sig = 1 / (1 + np.exp(-logits))
    for t in (0.4, 0.5):
        assert np.array_equal(sig > t, probs.astype(np.float32) > t)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_avsbench_s4_layout_is_evaluated_with_the_same_metrics(ray_node, tmp_path):
    from tests.data.layout_fixtures import write_avsbench_fixture

    root = write_avsbench_fixture(tmp_path / "s4", "s4")
    policy, tok = make_policy(seed=5)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 32, 32), tmp_path / "ckpt")
    # scored at the data's mask size, not the checkpoint's 32 (as the official code scores at 256 px)
    data = DataConfig(root=str(root), layout="avsbench-s4", image_size=32, mask_size=48)
    results = evaluate_checkpoint(str(ckpt), data, ["test"], tmp_path / "out", 1, MetricsConfig(), max_new_tokens=8)
    from aurora_rl.report.eval_outputs import load_stage_eval

    saved = load_stage_eval(tmp_path / "out").predictions("test")
    assert results["test"]["clips"] == len(saved["keys"]) >= 1
    assert saved["masks"].shape[1:] == saved["gt"].shape[1:] == (5, 48, 48)  # AVSBench clips have 5 frames
    assert 0.0 <= results["test"]["J"] <= 1.0


def test_scores_count_reflective_answers_and_classes_by_the_last_attempt():
    from aurora_rl.evaluation.scoring import EvaluationWriter
    from aurora_rl.prompts.answer_format import REFLECT_TRIGGER, compose_answer

    gt = np.zeros((2, 8, 8), dtype=np.uint8)
    gt[:, 2:6, 2:6] = 1

    def pred(text: str) -> dict:
        return {"text": text, "gt_class": "dog", "is_null": False, "mask_probs": gt.astype(np.float16), "gt_masks": gt}

    plain = compose_answer("a dog .", "the dog barks .", "the dog .", "dog")
    first = compose_answer("a .", "b .", "c .", "cat").removesuffix(" it is [SEG] .")
    wrong_then_right = f"{first} {REFLECT_TRIGGER} {plain}"
    preds = [pred(plain), pred(wrong_then_right), pred(plain), pred("")]
    writer = EvaluationWriter(MetricsConfig())  # held in memory, nothing written
    writer.add("test_s", preds)
    split = writer.results()["test_s"]
    assert split["reflect_rate"] == 0.25 and split["format_rate"] == 0.75
    assert split["class_acc"] == 0.75  # the reflective answer is judged by its corrected path
    assert split["failures"] == {"malformed answer": 1}


def test_a_uid_on_two_rows_is_saved_and_read_back_as_two_samples(tmp_path):
    """Each row its own prediction, scored against its own mask, kept apart in every saved output."""
    from aurora_rl.evaluation.scoring import EvaluationWriter, sample_key
    from aurora_rl.prompts.answer_format import compose_answer
    from aurora_rl.report.eval_outputs import load_stage_eval

    left, right = np.zeros((2, 8, 8), dtype=np.uint8), np.zeros((2, 8, 8), dtype=np.uint8)
    left[:, :, :4], right[:, :, 4:] = 1, 1
    answer = compose_answer("a saw .", "a buzz .", "the saw .", "saw")

    def pred(row: int, gt: np.ndarray) -> dict:
        return {"uid": "v_saw_4", "row": row, "split": "test_s", "expression": f"expression {row}", "kind": None,
                "text": answer, "gt_class": "saw", "is_null": False, "mask_probs": left.astype(np.float16),
                "gt_masks": gt}

    preds = {"test_s": [pred(7, left), pred(9, right)]}  # the model segments the left object twice
    with EvaluationWriter(MetricsConfig(), tmp_path) as writer:
        for split, part in preds.items():
            writer.add(split, part)
    results = writer.results()
    assert results["test_s"]["clips"] == 2 and results["test_s"]["J"] == pytest.approx(0.5)
    (tmp_path / "results.json").write_text("{}")
    samples = load_stage_eval(tmp_path).samples
    assert sorted(samples) == ["v_saw_4@7", "v_saw_4@9"] == sorted(sample_key(p) for p in preds["test_s"])
    assert samples["v_saw_4@7"]["iou"] == pytest.approx(1.0) and samples["v_saw_4@9"]["iou"] == pytest.approx(0.0)
    saved = load_stage_eval(tmp_path).predictions("test_s")
    assert list(saved["keys"]) == ["v_saw_4@7", "v_saw_4@9"]
    assert np.array_equal(saved["gt"][0], left > 0) and np.array_equal(saved["gt"][1], right > 0)  # each its own


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eval_reads_an_eval_config_and_its_folder_makes_a_report(ray_node, synthetic_root, tmp_path, capsys):
    from pathlib import Path

    from aurora_rl.cli import main

    root = Path(__file__).resolve().parents[2]
    policy, tok = make_policy(seed=5)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "ckpt")
    code = main(["eval", "--config", str(root / "configs" / "tiny" / "eval.yaml"), f"model.path={ckpt}",
                 f"data.root={synthetic_root}", "data.max_samples=2", "data.eval_splits=[test_s, test_n]",
                 f"run.output_dir={tmp_path / 'runs'}", "max_new_tokens=8"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "runs" / "tiny-eval"  # run.name of configs/tiny/eval.yaml
    results = json.loads((out / "results.json").read_text())
    assert results["test_s"]["clips"] == 2 and results["test_n"]["clips"] == 2 and "test_u" not in results
    assert main(["report", str(out), "--data", str(synthetic_root), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file()
