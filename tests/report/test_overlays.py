import numpy as np
from PIL import Image

from aurora_rl.report.eval_outputs import load_stage_eval
from aurora_rl.report.overlays import choose_examples

def test_same_examples_for_every_stage(built_report):
    examples = choose_examples([load_stage_eval(s.eval_dir) for s in built_report.stages])
    assert [e.split for e in examples] == ["test_s", "test_s", "test_u", "test_u", "test_n"]
    for e in examples:
        for stage in ("untrained", "sft", "grpo"):
            path = built_report.out_dir / "overlays" / stage / f"{e.uid}.png"
            with Image.open(path) as img:
                assert 600 <= img.width <= 1400 and 250 <= img.height <= 900


def test_examples_where_stages_differ_come_first(built_report):
    examples = choose_examples([load_stage_eval(s.eval_dir) for s in built_report.stages])
    # the two test_u samples grpo got wrong have the largest IoU spread across stages
    assert sorted(e.uid for e in examples if e.split == "test_u") == sorted(built_report.grpo_wrong_uids)


def test_predicted_mask_is_tinted_only_where_a_stage_predicts_one(built_report):
    uid = built_report.grpo_wrong_uids[0]

    def frames_area(stage):
        with Image.open(built_report.out_dir / "overlays" / stage / f"{uid}.png") as img:
            rgb = np.asarray(img.convert("RGB")).astype(int)
        return rgb[: int(rgb.shape[0] * 0.6)]  # the frame row; the caption below differs anyway

    untrained, sft = frames_area("untrained"), frames_area("sft")  # no mask vs the target's mask
    assert untrained.shape == sft.shape
    # magenta over the (red) target raises blue where sft predicts and nowhere else
    bluer = (sft[..., 2] - untrained[..., 2]) > 30
    assert bluer.sum() > 200
    assert (np.abs(sft - untrained).max(axis=-1) > 30).sum() < 1.5 * bluer.sum()
