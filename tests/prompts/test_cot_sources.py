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
    entries, report = load_cot("jsonl", ["a", "b", "c", "d", "e"], path=str(path), max_tokens=150)
    assert sorted(entries) == ["a", "b"]
    assert entries["a"].target_class == "dog" and entries["b"].target_class is None
    assert report.accepted == 2
    reasons = dict(report.rejected)
    assert sum(reasons.values()) == 4  # c, d, e, and the broken line
    assert any("no [SEG] token" in r for r in reasons)
    assert "longer than max_tokens=150" in reasons
    assert "no CoT for this uid" in reasons
    assert any(r.startswith("not JSON") for r in reasons)
    assert "2/6 accepted" in report.summary()
