import numpy as np
import pytest

from aurora_rl.config.schema import DataConfig
from aurora_rl.data import AVSBenchDataset, DataError, build_dataset
from tests.data.layout_fixtures import SIZE, expected_mask


def test_s4_train_annotates_only_the_first_frame(s4_root):
    ds = AVSBenchDataset(s4_root, "s4", "train", mask_size=SIZE)
    assert len(ds) == 1
    s = ds[0]
    assert (s.uid, s.vid, s.fid, s.split) == ("clipA", "clipA", 0, "train")
    assert s.expression == "the sounding object" and not s.is_null
    assert s.frames.shape == (5, 3, 64, 64)
    assert np.allclose(s.frames[:, 0].mean(axis=(1, 2)), [40 * i / 255 for i in range(1, 6)], atol=1e-6)
    assert s.mask_valid.tolist() == [True, False, False, False, False]
    assert np.array_equal(s.masks[0], expected_mask(0, 1)) and s.masks[1:].sum() == 0
    assert s.audio.shape == (16000,) and s.fbank.shape == (98, 128)


def test_s4_test_and_ms3_annotate_every_frame(s4_root, ms3_root):
    s = AVSBenchDataset(s4_root, "s4", "test", mask_size=SIZE)[0]
    assert s.mask_valid.all()
    assert all(np.array_equal(s.masks[i], expected_mask(0, i + 1)) for i in range(5))
    m = AVSBenchDataset(ms3_root, "ms3", "val", mask_size=SIZE)[0]
    assert m.uid == "clipN" and m.mask_valid.all()
    assert np.array_equal(m.masks[4], expected_mask(0, 5))


def test_from_config_caps_frames_at_five(ms3_root):
    cfg = DataConfig(root=str(ms3_root), layout="avsbench-ms3", num_frames=10, image_size=16, mask_size=16)
    ds = build_dataset(cfg, "train")
    assert isinstance(ds, AVSBenchDataset) and ds[0].frames.shape == (5, 3, 16, 16)
    cfg3 = DataConfig(root=str(ms3_root), layout="avsbench-ms3", num_frames=3)
    assert build_dataset(cfg3, "train").frame_indices == [0, 2, 4]


def test_missing_mask_raises_naming_the_file(ms3_root):
    p = ms3_root / "ms3_data" / "gt_masks" / "train" / "clipM" / "clipM_2.png"
    p.unlink()
    with pytest.raises(DataError, match="image file is missing") as e:
        AVSBenchDataset(ms3_root, "ms3", "train")[0]
    assert e.value.path == str(p)


def test_unknown_split_and_bad_csv(s4_root):
    with pytest.raises(ValueError, match="unknown AVSBench split"):
        AVSBenchDataset(s4_root, "s4", "test_s")
    csv_path = s4_root / "s4_meta_data.csv"
    csv_path.write_text(csv_path.read_text().replace(",test\n", ",testing\n"))
    with pytest.raises(DataError, match="line 3: unknown split 'testing'"):
        AVSBenchDataset(s4_root, "s4", "train")
