"""Four-step chain-of-thought written from a synthetic clip's scene facts.

    step 1 : a yellow piano on the left , a blue drum on the right .
    step 2 : the piano sounds from frame 3 , the drum sounds from frame 6 .
    step 3 : the reference asks for the first object to make a sound , which is the piano on the left .
    step 4 : the target is piano . it is [SEG] .

Step 1 lists the objects left to right, step 2 the sounding ones by onset, step 3 restates the
expression and resolves it to one object, its class and where it is (or says the referent is not
in the clip), step 4 names the class. Where the target is matters for the mask: the [SEG] state
that prompts SAM reads the answer before it, and a class alone does not say which of two
look-alike objects to segment.
"""

from __future__ import annotations

from typing import Optional

from aurora_rl.prompts.answer_format import CoTEntry, compose_answer

POSITION_ORDER = {"left": 0, "center": 1, "right": 2}
WHERE = {"left": "on the left", "center": "in the center", "right": "on the right"}
COT_WORDS = ("a , on the left right in center sounds from frame nothing reference asks for which is not clip "
             "every").split()
# The "name every object" task (``list_cot``): not a referring expression, so never in the benchmark's rows.
EVERY_OBJECT = "every object ."


def describe_images(objects: list[dict]) -> str:
    ordered = sorted(objects, key=lambda o: POSITION_ORDER[o["position"]])
    return " , ".join(f"a {o['color']} {o['class']} {WHERE[o['position']]}" for o in ordered) + " ."


def describe_audio(objects: list[dict]) -> str:
    sounding = sorted((o for o in objects if o["sounds"]), key=lambda o: (o["onset_frame"], o["index"]))
    if not sounding:
        return "nothing sounds ."
    return " , ".join(f"the {o['class']} sounds from frame {o['onset_frame']}" for o in sounding) + " ."


def describe_reference(facts: dict) -> str:
    asked = facts["expression"].rstrip(" .")
    if facts["target_class"] is None:
        return f"the reference asks for {asked} , which is not in the clip ."
    # classes are distinct within a scene, so the class finds the object where no index is given
    target = next(o for o in facts["objects"] if o["class"] == facts["target_class"])
    return f"the reference asks for {asked} , which is the {facts['target_class']} {WHERE[target['position']]} ."


def list_cot(facts: dict) -> str:
    """The answer to "every object ." for a clip: steps 1-2 as ``scene_cot`` writes them, then every
    object left to right where a referring answer names its one target, and no [SEG] (nothing is
    segmented)::

        step 1 : a yellow piano on the left , a red siren on the right . step 2 : ...
        step 3 : the reference asks for every object , which is the piano on the left , the siren on the right .
        step 4 : the target is piano , siren .

    It names every object in the answer's own words, unseen-class distractors included: the
    stand-in for training that keeps writing class names outside the referring task.
    """
    ordered = sorted(facts["objects"], key=lambda o: POSITION_ORDER[o["position"]])
    found = " , ".join(f"the {o['class']} {WHERE[o['position']]}" for o in ordered)
    classes = " , ".join(o["class"] for o in ordered)
    steps = (describe_images(facts["objects"]), describe_audio(facts["objects"]),
             f"the reference asks for {EVERY_OBJECT.rstrip(' .')} , which is {found} .", f"the target is {classes} .")
    return " ".join(f"step {i} : {text}" for i, text in enumerate(steps, start=1))


def scene_cot(facts: dict, row: Optional[int] = None) -> CoTEntry:
    answer = compose_answer(describe_images(facts["objects"]), describe_audio(facts["objects"]),
                            describe_reference(facts), facts["target_class"])
    return CoTEntry(facts["uid"], answer, facts["target_class"], row)
