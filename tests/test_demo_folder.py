"""``aurora-rl demo`` keeps a quick demo and a full one apart: a folder records the plan it was made
with, and a run with another plan is refused before anything is reused or written."""

from __future__ import annotations

import json

from aurora_rl.cli import main
from aurora_rl.pipeline.main_job import FULL, QUICK


def test_a_full_demo_refuses_the_folder_of_a_quick_one(tmp_path, capsys):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "demo_plan.json").write_text(json.dumps(QUICK.__dict__))
    (folder / "runs").mkdir()  # its checkpoints, which a full demo must not take for its own
    assert main(["demo", "--out", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"aurora-rl: error: {folder} holds a demo made with another plan" in err
    assert f"videos {QUICK.videos} (now {FULL.videos})" in err and "Give another --out" in err
    assert json.loads((folder / "demo_plan.json").read_text())["videos"] == QUICK.videos  # nothing rewritten
    assert sorted(p.name for p in folder.iterdir()) == ["demo_plan.json", "runs"]


def test_a_folder_made_before_plans_were_recorded_is_judged_by_its_videos(tmp_path, capsys):
    folder = tmp_path / "old"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "synthetic_config.json").write_text(json.dumps({"videos": FULL.videos}))
    assert main(["demo", "--quick", "--out", str(folder)]) == 1
    assert f"{folder} holds a demo of {FULL.videos} videos, not {QUICK.videos}" in capsys.readouterr().err
    assert not (folder / "demo_plan.json").exists()


def test_the_quick_demo_has_a_folder_of_its_own_by_default():
    from aurora_rl.cli import build_parser
    from aurora_rl.commands.demo import demo_folder

    parse = build_parser().parse_args
    assert demo_folder(parse(["demo"])) == "runs/demo"
    assert demo_folder(parse(["demo", "--quick"])) == "runs/demo-quick"
    assert demo_folder(parse(["demo", "--quick", "--out", "x"])) == "x"


def test_a_folder_is_claimed_once_and_then_reused_by_the_same_plan(tmp_path):
    from aurora_rl.pipeline.main_job import _claim

    folder = tmp_path / "new"
    _claim(folder, FULL)
    assert json.loads((folder / "demo_plan.json").read_text()) == FULL.__dict__
    _claim(folder, FULL)  # the same plan again: its finished stages will be reused
    assert sorted(p.name for p in folder.iterdir()) == ["demo_plan.json"]
