"""The paired bootstrap over clips, on hand values."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_rl.metrics.paired_bootstrap import bootstrap_mean_change, paired_differences


def test_differences_are_paired_by_uid_and_averaged_over_checkpoints():
    before = {"a": 0.5, "b": 0.2, "c": 0.9}
    after = [{"a": 0.7, "b": 0.2, "c": 0.8, "extra": 1.0}, {"a": 0.5, "b": 0.4, "c": 0.8}]
    assert paired_differences(before, after) == pytest.approx([0.1, 0.1, -0.1])  # uids a, b, c; "extra" is not shared


def test_a_constant_shift_has_no_spread_however_much_clips_differ():
    before = {f"c{i}": 0.1 * (i % 7) for i in range(40)}  # clips differ widely from one another
    spread = bootstrap_mean_change([paired_differences(before, [{u: v + 0.03 for u, v in before.items()}])])
    assert spread.clips == 40 and spread.level == 0.95
    assert (spread.change, spread.low, spread.high) == pytest.approx((0.03, 0.03, 0.03))


def test_a_change_carried_by_one_clip_of_forty_reaches_zero():
    diffs = np.zeros(40)
    diffs[3] = 0.8
    spread = bootstrap_mean_change([diffs])
    assert spread.change == pytest.approx(0.02)
    assert spread.low == 0.0 and spread.high > 0.02  # a draw without that clip is likely (e^-1 per draw)


def test_strata_are_resampled_separately_and_averaged():
    # test_s moves every clip by +0.1, test_u by -0.3: Mix moves by exactly -0.1, with no spread
    spread = bootstrap_mean_change([np.full(30, 0.1), np.full(5, -0.3)])
    assert (spread.change, spread.low, spread.high, spread.clips) == pytest.approx((-0.1, -0.1, -0.1, 35))
    half = bootstrap_mean_change([np.array([0.0, 1.0] * 10), np.zeros(20)], level=0.5)
    most = bootstrap_mean_change([np.array([0.0, 1.0] * 10), np.zeros(20)], level=0.9)
    assert half.change == most.change == 0.25  # (0.5 + 0) / 2
    assert most.low < half.low < 0.25 < half.high < most.high  # a wider level, a wider interval


def test_an_empty_stratum_is_refused():
    with pytest.raises(ValueError, match="at least one clip"):
        bootstrap_mean_change([np.ones(3), np.array([])])
