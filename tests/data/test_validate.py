"""Plant each kind of defect in a clean fixture and check that validation reports it with its path."""

import numpy as np
import pytest
from PIL import Image

from aurora_rl.cli import main
from aurora_rl.data.audio_features import write_wav
from aurora_rl.data.validate import validate_avsbench, validate_dataset, validate_refavs
from tests.data.layout_fixtures import SIZE, VIDS


def kinds_at(report):
    return {(p.kind, p.path) for p in report.problems}


def frame(root, vid, t):
    return root / "media" / vid / "frames" / f"{t}.jpg"


def mask(root, vid, fid, t):
    return root / "gt_mask" / vid / f"fid_{fid}" / f"{t:05d}.png"


def test_clean_fixture_has_no_problems(refavs_root):
    report = validate_refavs(refavs_root)
    assert report.problems == []
    assert report.rows == 5
    assert report.files_checked == 1 + 3 * 11 + 5 * 10  # csv, frames + wav per video, masks per row


def defect_missing_frame(root):
    p = frame(root, VIDS[0], 3)
    p.unlink()
    return "missing_frame", p


def defect_unreadable_frame(root):
    p = frame(root, VIDS[1], 0)
    p.write_bytes(b"\xff\xd8\xff garbage")
    return "unreadable_frame", p


def defect_truncated_frame(root):
    p = frame(root, VIDS[2], 9)
    p.write_bytes(p.read_bytes()[:100])
    return "unreadable_frame", p


def defect_wrong_frame_count(root):
    p = frame(root, VIDS[0], 10)
    Image.new("RGB", (SIZE, SIZE)).save(p)
    return "frame_count", p.parent


def defect_frame_size(root):
    p = frame(root, VIDS[1], 5)
    Image.new("RGB", (SIZE, SIZE + 4)).save(p)
    return "frame_size", p.parent


def defect_missing_audio(root):
    p = root / "media" / VIDS[1] / "audio.wav"
    p.unlink()
    return "missing_audio", p


def defect_unreadable_audio(root):
    p = root / "media" / VIDS[2] / "audio.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return "unreadable_audio", p


def defect_silent_audio(root):
    p = root / "media" / VIDS[0] / "audio.wav"
    write_wav(p, np.zeros(16000, dtype=np.float32), 16000)
    return "silent_audio", p


def defect_mask_size(root):
    p = mask(root, VIDS[0], 1, 6)
    Image.new("L", (SIZE // 2, SIZE // 2)).save(p)
    return "mask_size", p


def defect_non_binary_mask(root):
    p = mask(root, VIDS[1], 0, 2)
    a = np.zeros((SIZE, SIZE), dtype=np.uint8)
    a[:4], a[4:8] = 255, 128
    Image.fromarray(a).save(p)
    return "non_binary_mask", p


def defect_missing_mask(root):
    p = mask(root, VIDS[2], 1, 0)
    p.unlink()
    return "missing_mask", p


def defect_wrong_mask_count(root):
    p = mask(root, VIDS[2], 1, 10)
    Image.new("L", (SIZE, SIZE)).save(p)
    return "mask_count", p.parent


def defect_null_mask_not_empty(root):
    p = mask(root, VIDS[2], 2, 4)
    a = np.zeros((SIZE, SIZE), dtype=np.uint8)
    a[3:6, 3:6] = 255
    Image.fromarray(a).save(p)
    return "null_mask_not_empty", p


def defect_bad_csv_row(root):
    p = root / "metadata.csv"
    p.write_text(p.read_text() + "v,v_x_1,train,notanumber,The thing.\n")
    return "bad_row", p


def defect_short_csv_row(root):
    p = root / "metadata.csv"
    p.write_text(p.read_text() + "v,v_x_1,train\n")
    return "bad_row", p


def defect_fid_not_a_number(root):
    p = root / "metadata.csv"
    p.write_text(p.read_text().replace(",test_s,0,", ",test_s,zero,"))
    return "bad_row", p


def defect_bad_facts(root):
    p = root / "scene_facts.jsonl"
    p.write_text('{"uid": "x"\n')
    return "facts", p


DEFECTS = [v for k, v in sorted(globals().items()) if k.startswith("defect_")]


@pytest.mark.parametrize("plant", DEFECTS, ids=lambda f: f.__name__.removeprefix("defect_"))
def test_each_defect_is_reported_with_its_path(refavs_root, plant):
    kind, path = plant(refavs_root)
    report = validate_refavs(refavs_root)
    assert (kind, str(path)) in kinds_at(report), [str(p) for p in report.problems]


def test_all_defects_at_once_are_all_reported(refavs_root):
    planted = set()
    for plant in DEFECTS:
        if plant in (defect_fid_not_a_number, defect_short_csv_row):  # they would hide other rows' files
            continue
        kind, path = plant(refavs_root)
        planted.add((kind, str(path)))
    assert planted <= kinds_at(validate_refavs(refavs_root))


def test_cli_validate_prints_every_problem_and_exits_1(refavs_root, capsys):
    _, p1 = defect_missing_frame(refavs_root)
    _, p2 = defect_silent_audio(refavs_root)
    assert main(["data", "validate", str(refavs_root)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and str(p1) in out and str(p2) in out


def test_cli_validate_clean_exits_0(refavs_root, capsys):
    assert main(["data", "validate", str(refavs_root)]) == 0
    assert "OK (refavs, 5 rows" in capsys.readouterr().out


def test_missing_metadata_is_a_problem(tmp_path):
    report = validate_dataset(tmp_path)
    assert [(p.kind, p.path) for p in report.problems] == [("metadata", str(tmp_path / "metadata.csv"))]


@pytest.mark.parametrize("variant", ["s4", "ms3"])
def test_avsbench_clean_and_defects(request, variant):
    root = request.getfixturevalue(f"{variant}_root")
    report = validate_dataset(root)
    assert report.layout == f"avsbench-{variant}" and report.problems == []
    data = root / f"{variant}_data"
    if variant == "s4":
        broken = data / "visual_frames" / "test" / "helicopter" / "clipB" / "clipB_3.png"
        wav = data / "audio_wav" / "train" / "dog_barking" / "clipA.wav"
    else:
        broken = data / "visual_frames" / "clipN" / "clipN.mp4_3.png"
        wav = data / "audio_wav" / "train" / "clipM.wav"
    broken.write_bytes(b"garbage")
    wav.unlink()
    found = kinds_at(validate_avsbench(root, variant))
    assert ("unreadable_frame", str(broken)) in found and ("missing_audio", str(wav)) in found


def test_rgb_masks_with_one_colour_are_binary_and_two_colours_are_not(refavs_root):
    p = mask(refavs_root, VIDS[0], 0, 1)
    a = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    a[2:6, 2:6] = (200, 0, 0)
    Image.fromarray(a).save(p)
    assert validate_refavs(refavs_root).problems == []
    a[10:12, 10:12] = (0, 200, 0)
    Image.fromarray(a).save(p)
    assert kinds_at(validate_refavs(refavs_root)) == {("non_binary_mask", str(p))}


def test_the_official_layout_as_released_passes_its_quirks_noted(official_root, capsys):
    """A TODO row (no media) is skipped and said; a uid on two rows is two samples, both checked."""
    report = validate_refavs(official_root)
    assert report.problems == [] and report.rows == 6
    assert report.notes == ["1 row of split 'TODO' skipped (not one of train, val, test_s, test_u, test_n)"]
    assert main(["data", "validate", str(official_root)]) == 0
    out = capsys.readouterr().out
    assert "1 row of split 'TODO' skipped" in out and ": OK (refavs, 6 rows" in out
