import numpy as np

from aurora_rl.evaluation.baselines import largest_regions


def test_largest_region_is_chosen_per_frame():
    frames = np.full((2, 3, 20, 20), 0.1, dtype=np.float32)
    frames[0, 0, 2:6, 2:6] = 0.9  # 16 px, red
    frames[0, 2, 10:18, 10:18] = 0.9  # 64 px, blue: the largest
    frames[1, 1, 1:4, 1:19] = 0.9  # only one region in frame 1
    masks = largest_regions(frames)
    assert masks[0, 12, 12] and not masks[0, 3, 3]
    assert masks[1, 2, 10] and masks[1].sum() >= 3 * 18
    assert not largest_regions(np.zeros((1, 3, 8, 8), dtype=np.float32)).any()


def test_stripes_are_joined_into_one_object():
    frames = np.full((1, 3, 20, 20), 0.1, dtype=np.float32)
    frames[0, 0, 4:16:2, 4:16] = 0.9  # striped square: rows with a one-pixel gap
    frames[0, 1, 0:2, 18:20] = 0.9  # a small solid square, apart
    masks = largest_regions(frames)
    assert masks[0, 5, 8] and masks[0, 14, 8] and not masks[0, 0, 19]
