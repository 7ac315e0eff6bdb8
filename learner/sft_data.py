"""Stage-1/2 training examples: a clip, its prompt, the answer to learn, the teacher's answer.

Order: one permutation per epoch from the run seed; global step ``s`` takes the slice
``[s*W*B, (s+1)*W*B)`` of it and rank ``r`` its own ``B`` rows, so a (epoch, step) position
names exactly which samples have been seen — what a resumed run skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from aurora_rl.data.clip_sample import ClipSample, collate_clips
from aurora_rl.model.mask_loss import pick_mask_frames
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.prompts.answer_format import build_prompt, direct_answer, step1_spans
from aurora_rl.prompts.scene_cot import EVERY_OBJECT, list_cot, naming_order


@dataclass(frozen=True)
class SFTExample:
    uid: str
    dataset_index: int  # row in the clip dataset
    answer: str  # the text the student learns (CoT, reflective or direct)
    target_class: Optional[str]
    expression: Optional[str] = None  # the prompt's expression when not the clip's ("every object .")
    segment: bool = True  # False: no [SEG] target; neither the clip's masks nor the teacher's [SEG] are learned
    step1_only: bool = False  # True: only the answer's step-1 tokens carry CE (cot.unasked_scenes_as: step1)


def every_object_examples(rows, facts: dict, count: int, seed: int, order: str = "left_to_right") -> list[SFTExample]:
    """``count`` "every object ." rows on distinct videos of ``rows`` (when there are fewer videos,
    each once per round), each answered by ``scene_cot.list_cot`` from the video's scene facts;
    ``order`` "shuffled" names each row's objects in step 3 in an order of its own."""
    if count == 0:
        return []
    first_row: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.uid in facts:
            first_row.setdefault(r.vid, i)
    if not first_row:
        raise ValueError("cot.every_object_share needs the scene facts of the training videos; none were found "
                         "(data/scene_facts.jsonl)")
    videos = sorted(first_row)
    rng = np.random.default_rng([seed, 11])
    rounds = -(-count // len(videos))  # each video once per round: as even as the count allows
    picked = np.concatenate([rng.permutation(len(videos)) for _ in range(rounds)])[:count]
    out = []
    for k in picked:
        i = first_row[videos[k]]
        fact = facts[rows[i].uid]
        out.append(listing_row(f"{videos[k]}/every_object", i, fact, order, rng))
    return out


def listing_row(uid: str, index: int, fact: dict, order: str, rng) -> SFTExample:
    """The "every object ." row of clip ``index``, answered by ``scene_cot.list_cot`` in ``order``."""
    named = naming_order(order, len(fact["objects"]), rng)
    return SFTExample(uid, index, list_cot(fact, named), None, expression=EVERY_OBJECT, segment=False)


def unasked_scene_uids(uids, facts: dict) -> set[str]:
    """The uids among ``uids`` whose scene holds an object of a class that no row of ``uids`` asks
    for (``target_class``): the scenes ``cot.skip_unasked_scenes`` keeps out of the referring rows."""
    missing = [u for u in uids if u not in facts]
    if missing:
        raise ValueError(f"cot.skip_unasked_scenes needs the scene facts of every training row; {len(missing)} lack "
                         f"them (e.g. {missing[0]}; data/scene_facts.jsonl)")
    asked = {facts[u]["target_class"] for u in uids} - {None}
    return {u for u in uids if any(o["class"] not in asked for o in facts[u]["objects"])}


def listing_instead(rows, facts: dict, uids: set[str], seed: int, order: str = "left_to_right") -> list[SFTExample]:
    """One "every object ." row for each row of ``rows`` in ``uids`` (the referring rows
    ``cot.skip_unasked_scenes`` leaves out), so that step 1 still learns to describe those scenes,
    their unasked objects included."""
    rng = np.random.default_rng([seed, 13])
    return [listing_row(f"{r.uid}/every_object", i, facts[r.uid], order, rng) for i, r in enumerate(rows)
            if r.uid in uids]


def check_teacher_vocabulary(teacher_tokenizer, tokenizer, teacher_dir) -> None:
    """The teacher reads the student's token ids (``batch["teacher"]``): their vocabularies must agree."""
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        theirs, ours = set(teacher_tokenizer.get_vocab()), set(tokenizer.get_vocab())
        differ = sorted(theirs ^ ours)[:5] or ["(the same words, other ids)"]
        raise ValueError(f"the teacher {teacher_dir} has another vocabulary than the student ({', '.join(differ)}); "
                         "train the teacher with this version, or set loss.distill=0")


class SFTBatcher:
    """Turns examples into per-rank batches of policy inputs and targets."""

    def __init__(self, examples: list[SFTExample], clips, tokenizer, batch_size: int, world_size: int, rank: int,
                 seed: int, blind_video_fraction: float = 0.0):
        if not examples:
            raise ValueError("no training examples (all CoT rejected, or an empty split)")
        self.examples = examples
        self.clips = clips
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.blind_video_fraction = blind_video_fraction

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.examples) // (self.batch_size * self.world_size))

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    def rows(self, epoch: int, step: int) -> list[SFTExample]:
        per_step = self.batch_size * self.world_size
        start = step * per_step + self.rank * self.batch_size
        idx = self.order(epoch)[start : start + self.batch_size]
        return [self.examples[i] for i in idx]

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def learned_tokens(self, rows: list[SFTExample], rng) -> tuple[list[bool], list[list[bool]]]:
        """Which rows are trained blind (video tokens blanked), and per row which answer tokens
        carry CE: all of them, except the step-1 tokens of a blind row, which the blanked frames
        can no longer tell, and all but the step-1 tokens of a ``step1_only`` row. Only rows whose
        answer has a step 1 are drawn blind."""
        blind, learned = [], []
        for row in rows:
            ids = self.tokenizer(row.answer, add_special_tokens=False, return_offsets_mapping=True)
            spans = step1_spans(row.answer)
            hidden = bool(spans) and self.blind_video_fraction > 0 and rng.random() < self.blind_video_fraction
            blind.append(hidden)
            in_step1 = [any(a <= start < b for a, b in spans) for start, _ in ids.offset_mapping]
            learned.append([(not row.step1_only or inside) and not (hidden and inside) for inside in in_step1]
                           + [not row.step1_only])  # + the appended eos
        return blind, learned

    def batch(self, epoch: int, step: int, mask_frames: Optional[int] = None) -> dict:
        """Inputs and targets of this rank's rows; ``mask_frames`` picks k random frames per clip
        (the same ones for every rerun of this step) whose masks are predicted and supervised."""
        rows = self.rows(epoch, step)
        clips: list[ClipSample] = [self.clips[r.dataset_index] for r in rows]
        stacked = collate_clips(clips)
        eos = [self.tokenizer.eos_token_id]
        prompts = [self.ids(build_prompt(r.expression or c.expression)) for r, c in zip(rows, clips)]
        rng = np.random.default_rng([self.seed, epoch, step, self.rank])
        frames, masks, valid = pick_mask_frames(stacked["masks"], stacked["mask_valid"], mask_frames, rng)
        valid = valid & torch.tensor([r.segment for r in rows])[:, None]
        media = (stacked["frames"], stacked["fbank"], stacked["fbank_lengths"], stacked["vid"])  # SAM cache by video
        answers = [self.ids(r.answer) + eos for r in rows]
        out = {
            "student": PolicyInputs(prompts, answers, *media, mask_frames=frames),
            "teacher": PolicyInputs(prompts, [self.ids(direct_answer(r.target_class)) + eos for r in rows], *media),
            "masks": masks,
            "mask_valid": valid,
            "segment": torch.tensor([r.segment for r in rows]),
            "uids": [r.uid for r in rows],
        }
        if self.blind_video_fraction > 0 or any(r.step1_only for r in rows):  # drawn after the mask frames
            blind, learned = self.learned_tokens(rows, rng)
            if self.blind_video_fraction > 0:
                out["student"].blank_video = torch.tensor(blind)
            out["ce_mask"] = torch.zeros(len(rows), max(map(len, answers)), dtype=torch.bool)
            for i, keep in enumerate(learned):
                out["ce_mask"][i, : len(keep)] = torch.tensor(keep)
        return out
