"""The user prompt and the AURORA answer format, and the parser of model outputs.

An answer has four reasoning steps — analyse the images, analyse the audio, analyse the
reference, name the target — then the segmentation call:

    step 1 : <images> step 2 : <audio> step 3 : <reference> step 4 : the target is <class> . it is [SEG] .

The null case names the target ``nothing`` (its masks are empty). Text written here is
lowercase with punctuation as separate words, so a word-level tokenizer can hold it; the
parser also accepts the cased, unspaced spelling of real models ("The target is guitar.",
"It is [SEG].").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

SEG = "[SEG]"
VIDEO = "<video>"
AUDIO = "<audio>"
NULL_CLASS = "nothing"
REFLECT_TRIGGER = "wait , let me reconsider ."

PROMPT_TEMPLATE = f"{VIDEO} {AUDIO} the reference is : {{expression}} reason step by step ."
STEP_NAMES = ("images", "audio", "reference", "target")
FORMAT_WORDS = (
    "step 1 2 3 4 : the target is it . , reference reason by nothing wait let me reconsider".split()
)
SEG_SUFFIX = f"it is {SEG} ."


@dataclass(frozen=True)
class CoTEntry:
    """One sample's chain-of-thought answer, from any source (scene facts, a JSONL, a teacher)."""

    uid: str
    answer: str  # the full four-step answer ending in "it is [SEG] ."
    target_class: Optional[str]  # None for null references
    row: Optional[int] = None  # the metadata line it answers; None: any row of its uid


def build_prompt(expression: str) -> str:
    """The user prompt: media placeholders, then the expression (lowercase, spaced punctuation)."""
    return PROMPT_TEMPLATE.format(expression=normalize(expression))


def compose_answer(images: str, audio: str, reference: str, target_class: Optional[str]) -> str:
    """A full four-step answer ending in ``it is [SEG] .``; ``target_class`` None -> null case."""
    target = target_class or NULL_CLASS
    parts = [normalize(images), normalize(audio), normalize(reference), f"the target is {target} ."]
    steps = " ".join(f"step {i} : {text}" for i, text in enumerate(parts, start=1))
    return f"{steps} {SEG_SUFFIX}"


def direct_answer(target_class: Optional[str]) -> str:
    """The distillation teacher's answer (no reasoning): ``it is <class> [SEG] .``"""
    return f"it is {target_class or NULL_CLASS} {SEG} ."


def normalize(text: str) -> str:
    """Lowercase, ``.`` ``,`` ``:`` as separate words, single spaces; ``[SEG]`` kept as is."""
    text = text.replace(SEG, "\0")
    text = re.sub(r"\s*([.,:])\s*", r" \1 ", text.lower())
    return " ".join(text.split()).replace("\0", SEG).strip()


@dataclass
class ParsedAnswer:
    steps: dict[str, str] = field(default_factory=dict)  # step name -> text, for the steps found
    target_class: Optional[str] = None  # from "the target is X", None when absent
    seg_count: int = 0
    ends_with_seg: bool = False  # the answer ends with "it is [SEG] ."
    attempts: int = 0  # reasoning paths ("step 1 :" marks); more than 1: a reflective answer
    problems: list[str] = field(default_factory=list)  # what is malformed, in words

    @property
    def well_formed(self) -> bool:
        return not self.problems


_STEP = re.compile(r"\bstep\s*([1-4])\s*:", re.IGNORECASE)
# Greedy up to the next full stop or bracket, then that character: one pass over the text. A
# lazy class followed by an escaped full stop re-scanned the rest of the text from every target
# phrase that no full stop closes: quadratic, 12 s for 128 KB.
_TARGET = re.compile(r"the target is\s+([^.\[\]]*)([.\[\]]?)", re.IGNORECASE)
_ENDS = re.compile(r"it is\s*\[SEG\]\s*\.?\s*$", re.IGNORECASE)


def parse_answer(text: str) -> ParsedAnswer:
    """Extract steps, target class and [SEG] facts from a completion; never raises.

    A reflective answer (a first attempt, the trigger, a corrected path) is judged by its
    last attempt: the target class is the last "the target is X" in the text.
    """
    out = ParsedAnswer()
    if not isinstance(text, str):
        out.problems.append(f"not text ({type(text).__name__})")
        return out
    flat = " ".join(text.split())
    out.seg_count = flat.count(SEG)
    out.ends_with_seg = bool(_ENDS.search(flat))
    targets = [name.strip() for name, end in _TARGET.findall(flat) if end == "." and name.strip()]
    if targets:
        out.target_class = normalize(targets[-1])
    last_attempt = flat[flat.lower().rfind("step 1") :] if "step 1" in flat.lower() else flat
    out.attempts = sum(m.group(1) == "1" for m in _STEP.finditer(flat))
    marks = list(_STEP.finditer(last_attempt))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(last_attempt)
        step_text = _ENDS.sub("", last_attempt[mark.end() : end]).strip()
        out.steps.setdefault(STEP_NAMES[int(mark.group(1)) - 1], step_text)
    found = [int(m.group(1)) for m in marks]
    if found != [1, 2, 3, 4]:
        out.problems.append(f"reasoning steps found {found or 'none'}, expected [1, 2, 3, 4]")
    if out.target_class is None:
        out.problems.append('no "the target is <class> ."')
    if out.seg_count == 0:
        out.problems.append("no [SEG] token")
    elif out.seg_count > 1:
        out.problems.append(f"{out.seg_count} [SEG] tokens (the last one is used)")
    if not out.ends_with_seg:
        out.problems.append('does not end with "it is [SEG] ."')
    return out

