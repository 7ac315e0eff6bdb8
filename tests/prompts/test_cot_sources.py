"""CoT from scene facts and from JSONL; malformed and over-long CoT rejected with reasons."""

from __future__ import annotations

import json

from aurora_rl.data.scene_facts import load_scene_facts
from aurora_rl.prompts.answer_format import parse_answer
from aurora_rl.prompts.cot_source import load_cot
from aurora_rl.prompts.scene_cot import scene_cot


def test_scene_cot_follows_the_facts(synthetic_root):
    facts = load_scene_facts(synthetic_root)
    for uid, f in list(facts.items())[:30]:
        entry = scene_cot(f)
        parsed = parse_answer(entry.answer)
        assert parsed.well_formed, (uid, parsed.problems)
        assert parsed.target_class == (f["target_class"] or "nothing")
        for obj in f["objects"]:
            assert f"{obj['color']} {obj['class']}" in parsed.steps["images"]
            if obj["sounds"]:
                assert f"the {obj['class']} sounds from frame {obj['onset_frame']}" in parsed.steps["audio"]
        if not any(o["sounds"] for o in f["objects"]):
            assert parsed.steps["audio"] == "nothing sounds ."


def test_scene_cot_orders_sounds_by_onset():
    facts = {"uid": "u", "expression": "the first object to make a sound .", "target_class": "dog", "objects": [
        {"index": 0, "class": "cat", "color": "red", "position": "right", "sounds": True, "onset_frame": 5},
        {"index": 1, "class": "dog", "color": "blue", "position": "left", "sounds": True, "onset_frame": 2},
    ]}
    steps = parse_answer(scene_cot(facts).answer).steps
    assert steps["images"] == "a blue dog on the left , a red cat on the right ."
    assert steps["audio"] == "the dog sounds from frame 2 , the cat sounds from frame 5 ."
    assert steps["reference"] == "the reference asks for the first object to make a sound , which is the dog on the left ."


def test_jsonl_source_accepts_both_forms_and_rejects_with_reasons(tmp_path):
    good_full = {"uid": "a", "cot": "Step 1: x. Step 2: y. Step 3: z. Step 4: The target is dog. It is [SEG]."}
    good_parts = {"uid": "b", "images": "x .", "audio": "y .", "reference": "z .", "target": None}
    no_seg = {"uid": "c", "cot": "step 1 : x . step 2 : y . step 3 : z . step 4 : the target is dog ."}
    too_long = {"uid": "d", "images": "word " * 200, "audio": "y .", "reference": "z .", "target": "dog"}
    path = tmp_path / "cot.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (good_full, good_parts, no_seg, too_long)) + "\n{broken\n")
    entries, report = load_cot("jsonl", [(u, i) for i, u in enumerate("abcde", start=2)], path=str(path),
                               max_tokens=150)
    assert sorted(entries) == [2, 3]  # keyed by row: a and b
    assert entries[2].target_class == "dog" and entries[3].target_class is None
    assert report.accepted == 2
    reasons = dict(report.rejected)
    assert sum(reasons.values()) == 4  # c, d, e, and the broken line
    assert any("no [SEG] token" in r for r in reasons)
    assert "longer than max_tokens=150" in reasons
    assert "no CoT for this sample" in reasons
    assert any(r.startswith("not JSON") for r in reasons)
    assert "2/6 accepted" in report.summary()


def test_a_uid_on_two_rows_takes_the_cot_that_names_each_row(tmp_path):
    """The official metadata repeats uids (another expression, another object): a CoT line that names
    its row serves that row only; a line without a row cannot serve a uid asked on two rows."""
    two = answer_with("saw")
    lines = [{"uid": "v_saw_4", "row": 7, "cot": two}, {"uid": "v_saw_4", "row": 9, "cot": answer_with("nothing")},
             {"uid": "w_dog_1", "cot": answer_with("dog")}, {"uid": "x_cat_1", "cot": answer_with("cat")},
             {"uid": "y_cow_1", "row": 3, "cot": answer_with("cow")}]
    path = tmp_path / "cot.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    wanted = [("v_saw_4", 7), ("v_saw_4", 9), ("w_dog_1", 11), ("x_cat_1", 12), ("x_cat_1", 13), ("z_pig_1", 3)]
    entries, report = load_cot("jsonl", wanted, path=str(path))
    assert sorted(entries) == [7, 9, 11]
    assert entries[7].target_class == "saw" and entries[9].target_class is None and entries[11].row == 11
    assert report.rejected["uid on more than one row: its CoT must name the row"] == 2  # x_cat_1 twice
    assert report.rejected["the CoT names this row with another uid"] == 1  # row 3 is y's line, asked for z
    assert report.examples["the CoT names this row with another uid"] == "z_pig_1@3"


def answer_with(target: str) -> str:
    return f"step 1 : x . step 2 : y . step 3 : z . step 4 : the target is {target} . it is [SEG] ."
