import numpy as np
import pytest

from aurora_rl.mask_rle import rle_check, rle_decode, rle_encode


def test_hand_computed_runs():
    masks = np.array([[[0, 1, 1], [0, 0, 1]]], dtype=bool)  # flat: 0 1 1 0 0 1
    assert rle_encode(masks) == {"shape": [1, 2, 3], "counts": [1, 2, 2, 1]}


def test_leading_foreground_starts_with_empty_zero_run():
    masks = np.array([[[1, 1, 0, 1]]])
    assert rle_encode(masks)["counts"] == [0, 2, 1, 1]


def test_empty_and_full_stacks():
    assert rle_encode(np.zeros((2, 4, 4)))["counts"] == [32]
    assert rle_encode(np.ones((2, 4, 4)))["counts"] == [0, 32]


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((10, 17, 23)) > 0.6
    assert np.array_equal(rle_decode(rle_encode(masks)), masks)


def test_corrupt_counts_are_refused():
    with pytest.raises(ValueError, match="sum to 5"):
        rle_decode({"shape": [1, 2, 3], "counts": [1, 2, 2]})
    with pytest.raises(ValueError):
        rle_decode({"shape": [1, 1, 2], "counts": [3, -1]})


def test_check_validates_counts_without_expanding():
    masks = np.random.default_rng(0).random((3, 5, 7)) > 0.5
    shape, counts = rle_check(rle_encode(masks))
    assert shape == (3, 5, 7) and counts.sum() == masks.size
    # a 400-megapixel stack is checked from its two runs, never allocated
    assert rle_check({"shape": [4, 10000, 10000], "counts": [10**8, 3 * 10**8]})[0] == (4, 10000, 10000)
    with pytest.raises(ValueError, match="sum to 5"):
        rle_check({"shape": [1, 2, 3], "counts": [1, 2, 2]})
    with pytest.raises(ValueError):
        rle_check({"shape": [1, 1, 2], "counts": [3, -1]})
