"""bench/research/grpo_diagnostics.py: the random step's size, the step-1 / step-3 consistency check, classes per
template, step 3's positions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aurora_rl.data.scene_facts import write_scene_facts  # noqa: E402
from bench.research.grpo_diagnostics import (  # noqa: E402
    classes, consistency, positions, random_step_weights, step1_sees_target, step3_follows_step1,
)

COLORS = {"red", "blue", "green", "yellow"}
IMAGES = "step 1 : a red piano on the left , a blue drum in the center , a green bell on the right ."
AUDIO = "step 2 : the drum sounds from frame 2 ."


def answer(pick: str) -> str:
    return f"{IMAGES} {AUDIO} step 3 : the reference asks for it , which is {pick} . step 4 : the target is x . it is [SEG] ."


def test_step3_is_checked_against_the_object_step1_gives_the_expression():
    assert step3_follows_step1(answer("the drum in the center"), "the blue object .", COLORS) == (True, True)
    assert step3_follows_step1(answer("the drum on the left"), "the blue object .", COLORS) == (True, False)
    assert step3_follows_step1(answer("the bell on the right"), "the green bell .", COLORS) == (True, True)
    assert step3_follows_step1(answer("the piano on the left"), "the piano .", COLORS) == (True, True)
    assert step3_follows_step1(answer("the piano on the left"), "the object on the left .", COLORS) == (True, True)
    # step 1 has no yellow object, and no violin: nothing to look up, never "follows"
    assert step3_follows_step1(answer("the piano on the left"), "the yellow object .", COLORS) == (False, False)
    assert step3_follows_step1(answer("the piano on the left"), "the violin .", COLORS) == (False, False)
    # a malformed answer (no step 3) does not follow
    assert step3_follows_step1(IMAGES, "the red object .", COLORS) == (True, False)


def test_consistency_table_counts_by_split_and_template(tmp_path, capsys):
    rows = [("a", "color", "the blue object .", "visual"), ("b", "color", "the red object .", "visual"),
            ("c", "sound", "the object making the sound .", "audio")]
    facts = [{"uid": uid, "split": "test_s", "template": template, "expression": expression, "expression_kind": kind,
              "target_class": "drum", "objects": []} for uid, template, expression, kind in rows]
    samples = [{"uid": "a", "text": answer("the drum in the center"), "iou": 0.9},
               {"uid": "b", "text": answer("the drum in the center"), "iou": 0.1},
               {"uid": "c", "text": answer("the drum in the center"), "iou": 0.9}]
    write_scene_facts(tmp_path, facts)
    (tmp_path / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    args = type("Args", (), {"data": str(tmp_path), "samples": [str(tmp_path / "samples.jsonl")]})
    assert consistency(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "| test_s |" in line]
    assert len(rows) == 1  # the audio row is not a visual expression
    assert rows[0].endswith("| test_s | color | 2 | 1.00 | 0.50 | 0.50 | 0.50 |")


def test_class_accuracy_per_template_is_split_into_what_step_1_sees(tmp_path, capsys):
    scene = [{"index": 0, "class": "piano", "position": "left"}, {"index": 1, "class": "drum", "position": "center"},
             {"index": 2, "class": "violin", "position": "right"}]  # IMAGES sees piano, drum; not the violin
    rows = [("a", "color", 1, "drum"), ("b", "color", 1, "drum"), ("c", "position", 2, "violin"),
            ("d", "absent_class", None, None)]
    facts = [{"uid": uid, "split": "test_s", "template": template, "target_index": target, "target_class": cls,
              "expression": "", "expression_kind": "visual", "objects": scene} for uid, template, target, cls in rows]
    samples = [{"uid": "a", "text": answer("the drum in the center"), "target_class": "drum"},
               {"uid": "b", "text": answer("the bell on the right"), "target_class": "bell"},
               {"uid": "c", "text": answer("the bell on the right"), "target_class": "violin"},
               {"uid": "d", "text": answer("the bell on the right"), "target_class": "bell"}]
    assert step1_sees_target(samples[0]["text"], facts[0])
    assert not step1_sees_target(samples[2]["text"], facts[2])  # step 1 says "green bell" where the violin is
    assert not step1_sees_target(samples[3]["text"], facts[3])  # no target at all
    write_scene_facts(tmp_path, facts)
    (tmp_path / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    args = type("Args", (), {"data": str(tmp_path), "samples": [str(tmp_path / "samples.jsonl")]})
    assert classes(args) == 0
    rows = [line.split(" | ")[1:] for line in capsys.readouterr().out.splitlines() if "| test_s |" in line]
    assert rows == [["test_s", "color", "2", "0.500", "1.000 |"], ["test_s", "position", "1", "1.000", "0.000 |"]]


def test_positions_count_the_lookup_of_the_named_class_and_the_side_of_wrong_picks(tmp_path, capsys):
    scene = [{"index": 0, "class": "piano", "position": "left"}, {"index": 1, "class": "drum", "position": "center"},
             {"index": 2, "class": "bell", "position": "right"}]
    rows = [("a", "test_u", 1), ("b", "test_u", 1), ("c", "test_u", 2), ("d", "test_u", 2), ("e", "test_u", None),
            ("f", "test_s", 0)]
    facts = [{"uid": uid, "split": split, "template": "color", "target_index": target, "expression": "",
              "expression_kind": "visual", "target_class": None if target is None else scene[target]["class"],
              "objects": scene} for uid, split, target in rows]
    samples = [{"uid": "a", "text": answer("the drum in the center")},  # class and position right
               {"uid": "b", "text": answer("the drum on the left")},  # class right, position not: a wrong left
               {"uid": "c", "text": answer("the piano on the left")},  # another object: a wrong left
               {"uid": "d", "text": IMAGES},  # no step 3: no pick, but the target counts
               {"uid": "e", "text": answer("the piano on the left")},  # no target: not counted
               {"uid": "f", "text": "wait " + answer("the drum on the right")}]
    write_scene_facts(tmp_path, facts)
    (tmp_path / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    args = type("Args", (), {"data": str(tmp_path), "samples": [str(tmp_path / "samples.jsonl")]})
    assert positions(args) == 0
    rows = [line.split(" | ")[1:] for line in capsys.readouterr().out.splitlines() if "| test_" in line]
    assert rows == [["test_s", "1 / 0 / 0", "0", "0.000", "0 / 0 / 1 |"],
                    ["test_u", "0 / 2 / 2", "2", "0.500", "2 / 0 / 0 |"]]


def test_random_step_moves_each_tensor_as_far_as_the_run_in_another_direction():
    gen = torch.Generator().manual_seed(0)
    before = {"w": torch.randn(40, 30, generator=gen), "b": torch.zeros(30), "steps": torch.tensor([3])}
    after = {"w": before["w"] + 0.01 * torch.randn(40, 30, generator=gen), "b": before["b"] + 0.5,
             "steps": torch.tensor([4])}
    moved = random_step_weights(before, after, seed=1)
    for name in ("w", "b"):
        run, ours = after[name] - before[name], moved[name] - before[name]
        assert torch.allclose(ours.norm(), run.norm(), rtol=1e-4)
        cosine = float((ours.flatten() @ run.flatten()) / (ours.norm() * run.norm()))
        assert abs(cosine) < 0.5
    assert torch.equal(moved["steps"], before["steps"])  # integer tensors are left as they are
    assert not torch.equal(random_step_weights(before, after, seed=2)["w"], moved["w"])
