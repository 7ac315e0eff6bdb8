"""Hostile dataset files are refused naming the file and the line or field, never a traceback.

A uid that climbs out of the dataset folder (with a complete clip planted where it points, so a
reader that followed it would succeed), an expression of 5 MB, a fid of a Unicode digit, a mask
PNG whose header declares 20000 x 20000 pixels. Each is written as a real file and read through
``read_metadata`` (what training and ``aurora-rl eval`` read), ``RefAVSDataset`` and
``aurora-rl data validate``.
"""

from __future__ import annotations

import csv
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from aurora_rl.cli import main
from aurora_rl.data import DataError, RefAVSDataset
from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.avsbench_dataset import AVSBenchLayout
from aurora_rl.data.validate import validate_dataset
from tests.data.layout_fixtures import ROWS, VIDS, expected_mask, write_pcm16, write_refavs_fixture


def set_row(root, line: int, **fields) -> None:
    """Rewrite metadata.csv line ``line`` (the header is line 1) with some fields replaced."""
    path = layout.metadata_path(root)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    row = dict(zip(layout.COLUMNS, rows[line - 1]))
    row.update(fields)
    rows[line - 1] = [row[c] for c in layout.COLUMNS]
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def plant_clip_at(folder, size: int = 32) -> None:
    """A complete clip (10 frames, audio, masks of fid 0) in ``folder``, laid out as ``media/<vid>``
    and ``gt_mask/<vid>`` would be if <vid> led there."""
    (folder / "frames").mkdir(parents=True)
    for t in range(10):
        Image.new("RGB", (size, size), (9, 9, 9)).save(folder / "frames" / f"{t}.jpg")
    write_pcm16(folder / "audio.wav", np.zeros(16000), 16000)
    (folder / "fid_0").mkdir()
    for t in range(10):
        Image.fromarray(expected_mask(0, t) * 255, mode="L").save(folder / "fid_0" / f"{t:05d}.png")


def refused(root, line: int, field: str, split: str = "train") -> DataError:
    """The DataError of reading ``root``, checked to name metadata.csv, the line and the field;
    ``data validate`` reports the same line as a bad row."""
    with pytest.raises(DataError) as e:
        layout.read_metadata(root)
    with pytest.raises(DataError) as from_dataset:
        RefAVSDataset(root, split)
    for error in (e.value, from_dataset.value):
        assert error.path == str(layout.metadata_path(root))
        assert f"line {line}: {field}" in error.message
    report = validate_dataset(root)
    bad = [p for p in report.problems if p.kind == "bad_row"]
    assert [p.message.split(":")[0] for p in bad] == [f"line {line}"]
    assert all(p.path.startswith(str(root)) for p in report.problems)
    return e.value


@pytest.mark.parametrize("uid", ["../../outside_drum_1", "../../../x_drum_1", "media/../../outside_drum_1",
                                 ".._drum_1", "-1HyqEM_VwM_137000_147000²_car_1", "a\\b_drum_1"])
def test_a_uid_that_leads_out_of_the_dataset_is_refused_naming_line_and_field(tmp_path, uid):
    root = write_refavs_fixture(tmp_path / "data" / "refavs")
    for outside in (tmp_path / "data" / "outside", tmp_path / "x"):  # where media/<vid> and gt_mask/<vid> lead
        plant_clip_at(outside)
    set_row(root, 3, uid=uid, fid="0")
    error = refused(root, 3, "uid")
    assert repr(uid) in error.message and "ASCII letters, digits, '-' and '_'" in error.message
    with pytest.raises(ValueError, match="not <vid>_<class>_<n>"):
        layout.folder_vid(uid)  # the overlays derive folders from saved uids through it too


def test_the_official_ids_still_pass(tmp_path):
    """Video ids that begin with - or --, underscores inside them: the official metadata's shapes."""
    root = write_refavs_fixture(tmp_path / "refavs")
    assert [r.uid for r in layout.read_metadata(root)] == [r[1] for r in ROWS]
    assert {r.vid for r in layout.read_metadata(root)} == set(VIDS)


def test_an_expression_of_5_mb_is_refused_naming_the_line(tmp_path):
    root = write_refavs_fixture(tmp_path / "refavs")
    set_row(root, 4, exp="the dog " * 655_360)  # 5 MB, over the csv module's field limit
    error = refused(root, 4, "cannot read the row", split="test_s")
    assert "field larger than field limit" in error.message
    metadata = layout.parse_metadata(root)
    assert len(metadata.rows) == len(ROWS) - 1  # the rows after it are still read


def test_an_expression_over_the_bound_is_refused_naming_the_line(tmp_path):
    root = write_refavs_fixture(tmp_path / "refavs")
    set_row(root, 2, exp="a" * (layout.MAX_EXPRESSION_CHARS + 1))
    error = refused(root, 2, "expression")
    assert f"expression of {layout.MAX_EXPRESSION_CHARS + 1} characters (at most 1000)" in error.message


@pytest.mark.parametrize("fid", ["²", "٣", "1.0", "-1"])
def test_a_fid_that_is_not_an_ascii_integer_is_refused_naming_line_and_field(tmp_path, fid):
    """"²" passes str.isdigit() and fails int(); "٣" passes both and would name folder fid_3."""
    root = write_refavs_fixture(tmp_path / "refavs")
    set_row(root, 2, fid=fid)
    error = refused(root, 2, "fid")
    assert f"fid {fid!r} is not a non-negative integer" in error.message


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG that declares ``width`` x ``height`` and holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_mask_declaring_20000_by_20000_pixels_is_refused_naming_the_file(tmp_path, capsys):
    root = write_refavs_fixture(tmp_path / "refavs")
    bomb = layout.mask_path(root, VIDS[0], 0, 4)
    bomb.write_bytes(png_header_only(20000, 20000))
    assert bomb.stat().st_size < 100
    with pytest.raises(DataError) as e:
        RefAVSDataset(root, "train", image_size=16, mask_size=8)[0]
    assert e.value.path == str(bomb) and "too large to decode" in e.value.message
    report = validate_dataset(root)
    assert [(p.kind, p.path) for p in report.problems] == [("unreadable_mask", str(bomb))]
    assert main(["data", "validate", str(root)]) == 1
    assert str(bomb) in capsys.readouterr().out


@pytest.mark.parametrize("name", ["../../outside", "..", "a/b"])
def test_an_avsbench_name_that_leads_out_of_the_dataset_is_refused(s4_root, name):
    path = s4_root / "s4_meta_data.csv"
    lines = path.read_text().splitlines()
    lines[1] = ",".join([name] + lines[1].split(",")[1:])
    path.write_text("\n".join(lines) + "\n")
    rows, problems = AVSBenchLayout(s4_root, "s4").parse_metadata()
    assert [(p.kind, p.path) for p in problems] == [("bad_row", str(path))]
    assert problems[0].message.startswith(f"line 2: video name {name!r} is not a folder name")
    assert all(r.name != name for r in rows)
