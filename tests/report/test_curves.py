import numpy as np
from PIL import Image

from aurora_rl.report.curves import ema, panel_keys, plot_stage_curves


def test_curve_pngs_exist_and_are_readable_sizes(built_report):
    for stage in ("sft", "grpo"):
        with Image.open(built_report.out_dir / "curves" / f"{stage}.png") as img:
            assert img.width >= 900 and img.height >= 500
            assert np.asarray(img.convert("L")).std() > 10  # not a blank canvas
    assert not (built_report.out_dir / "curves" / "untrained.png").exists()


def test_grpo_panels_pick_every_reward_kind():
    keys = ["reward", "reward_format", "reward_iou", "reward_cls", "kl", "time_rollout_s"]
    assert panel_keys(["reward", "reward_*"], keys) == ["reward", "reward_cls", "reward_format", "reward_iou"]
    assert panel_keys(["time_*_s"], keys) == ["time_rollout_s"]


def test_no_metrics_no_figure(tmp_path):
    assert plot_stage_curves("untrained", {}, tmp_path / "x.png") is None
    assert plot_stage_curves("odd", {"samples_per_s": (np.arange(3), np.ones(3))}, tmp_path / "y.png") is None


def test_ema_starts_at_the_first_value_and_follows_a_constant():
    assert ema(np.array([4.0, 4.0, 4.0]), 5)[0] == 4.0
    assert np.allclose(ema(np.full(10, 2.5), 3), 2.5)
