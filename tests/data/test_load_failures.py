import pytest
import torch

from aurora_rl.data import FailureLog, LoadFailure, RefAVSDataset, TolerantDataset, TooManyFailures, collate_clips
from tests.data.layout_fixtures import VIDS


def test_failures_travel_through_dataloader_workers_and_are_counted(refavs_root):
    bad = refavs_root / "media" / VIDS[0] / "frames" / "2.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = TolerantDataset(RefAVSDataset(refavs_root, "train", image_size=16, mask_size=8))
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_clips)
    log = FailureLog(max_fraction=1.0)
    sizes = []
    for batch in loader:
        log.update(batch)
        sizes.append(batch["size"])
    # both train rows use the broken frame's video: nothing silently vanishes
    assert sizes == [0, 0] and log.loaded == 0 and len(log.failures) == 2
    assert {f.index for f in log.failures} == {0, 1}
    assert all(str(bad) in f.message for f in log.failures)
    assert log.report().startswith("2 of 2 samples could not be loaded")


def test_failure_budget_stops_the_run():
    log = FailureLog(max_fraction=0.1, min_seen=10)
    log.update({"size": 8, "failures": [LoadFailure(3, "x.jpg: cannot decode image")]})  # 9 seen: too early
    with pytest.raises(TooManyFailures, match="2 of 11 samples could not be loaded"):
        log.update({"size": 1, "failures": [LoadFailure(7, "y.jpg: cannot decode image")]})


def test_zero_budget_makes_any_failure_fatal():
    log = FailureLog(max_fraction=0.0)
    log.update({"size": 4, "failures": []})
    with pytest.raises(TooManyFailures):
        log.update({"size": 3, "failures": [LoadFailure(0, "a.wav: audio file is missing")]})


def test_only_data_errors_are_tolerated():
    class Broken:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise KeyError("a bug, not a bad file")

    with pytest.raises(KeyError):
        TolerantDataset(Broken())[0]
