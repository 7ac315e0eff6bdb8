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
from aurora_rl.data.mix import ListingRow
from aurora_rl.model.mask_loss import pick_mask_frames
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.prompts.answer_format import build_prompt, direct_answer
from aurora_rl.prompts.scene_cot import EVERY_OBJECT


@dataclass(frozen=True)
class SFTExample:
    uid: str
    dataset_index: int  # row in the clip dataset
    answer: str  # the text the student learns (CoT, reflective, direct, or an "every object ." listing)
    target_class: Optional[str]
    expression: Optional[str] = None  # the prompt's expression when not the clip's ("every object .")
    segment: bool = True  # False: no [SEG] target; neither the clip's masks nor the teacher's [SEG] are learned


def listing_example(row: ListingRow) -> SFTExample:
    """An "every object ." row of the data mix as a training example (no [SEG], no mask loss)."""
    return SFTExample(row.uid, row.dataset_index, row.answer, None, expression=EVERY_OBJECT, segment=False)


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
                 seed: int):
        if not examples:
            raise ValueError("no training examples (all CoT rejected, or an empty split)")
        self.examples = examples
        self.clips = clips
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed

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
        return {
            "student": PolicyInputs(prompts, answers, *media, mask_frames=frames, frame_box=stacked["frame_box"]),
            "teacher": PolicyInputs(prompts, [self.ids(direct_answer(r.target_class)) + eos for r in rows], *media,
                                    frame_box=stacked["frame_box"]),
            "masks": masks,
            "mask_valid": valid,
            "segment": torch.tensor([r.segment for r in rows]),
            "uids": [r.uid for r in rows],
        }
