"""The data mix: what a stage learns besides the referring rows of its training split (``mix:``).

One interface for every stage that trains:

    left_out(rows, facts)   the referring rows kept out of training: with skip_unasked_scenes,
                            those whose scene shows an object of a class no training row asks for
                            (stage 1 does not learn them, stage 2 does not sample them)
    sft_rows(...)           the "every object ." rows stages 1 and 2 add: a share of the referring
                            rows on distinct videos, and one in place of each row left out
    grpo_rows(...)          the "every object ." rows GRPO's learner ranks learn by CE each step
                            (``mix.every_object_rows`` of them per rank; one per video of the split)

An "every object ." row asks the clip's prompt with the expression ``EVERY_OBJECT`` and is
answered by ``scene_cot.list_cot``: every object in the answer's own words, left to right, no
[SEG]. It needs the dataset's scene facts (the synthetic benchmark writes them). What these rows
are for, and what they change, is in docs/FINDINGS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurora_rl.config.schema import MixConfig
from aurora_rl.prompts.scene_cot import list_cot


@dataclass(frozen=True)
class ListingRow:
    """An "every object ." row: row ``dataset_index`` of the split, answered by ``list_cot``."""

    uid: str
    dataset_index: int
    answer: str


def unasked_scene_uids(uids, facts: dict) -> set[str]:
    """The uids among ``uids`` whose scene holds an object of a class that no row of ``uids`` asks
    for (``target_class``)."""
    missing = [u for u in uids if u not in facts]
    if missing:
        raise ValueError(f"mix.skip_unasked_scenes needs the scene facts of every training row; {len(missing)} lack "
                         f"them (e.g. {missing[0]}; scene_facts.jsonl)")
    asked = {facts[u]["target_class"] for u in uids} - {None}
    return {u for u in uids if any(o["class"] not in asked for o in facts[u]["objects"])}


def every_object_rows(rows, facts: dict, count: int, seed: int) -> list[ListingRow]:
    """``count`` "every object ." rows on distinct videos of ``rows`` (when there are fewer videos,
    each once per round)."""
    if count == 0:
        return []
    first_row: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.uid in facts:
            first_row.setdefault(r.vid, i)
    if not first_row:
        raise ValueError("\"every object .\" rows (mix.every_object_share, mix.every_object_rows) need the scene "
                         "facts of the training videos; none were found (scene_facts.jsonl)")
    videos = sorted(first_row)
    rng = np.random.default_rng([seed, 11])
    rounds = -(-count // len(videos))  # each video once per round: as even as the count allows
    picked = np.concatenate([rng.permutation(len(videos)) for _ in range(rounds)])[:count]
    return [ListingRow(f"{videos[k]}/every_object", first_row[videos[k]], list_cot(facts[rows[first_row[videos[k]]].uid]))
            for k in picked]


class DataMix:
    def __init__(self, cfg: MixConfig, seed: int):
        self.cfg = cfg
        self.seed = seed

    def left_out(self, rows, facts: dict) -> set[int]:
        """The referring rows (their metadata lines) this stage does not learn."""
        if not self.cfg.skip_unasked_scenes:
            return set()
        unasked = unasked_scene_uids(list(dict.fromkeys(r.uid for r in rows)), facts)
        return {r.line for r in rows if r.uid in unasked}

    def sft_rows(self, rows, facts: dict, referring: int, left_out: set[int]) -> list[ListingRow]:
        """The rows stages 1 and 2 add to their ``referring`` examples: ``every_object_share`` of
        them, then one for each row of ``rows`` in ``left_out`` (its own clip, asked "every object .")."""
        share = every_object_rows(rows, facts, round(self.cfg.every_object_share * referring), self.seed)
        instead = [ListingRow(f"{r.uid}/every_object", i, list_cot(facts[r.uid])) for i, r in enumerate(rows)
                   if r.line in left_out]
        return share + instead

    def grpo_rows(self, rows, facts: dict) -> list[ListingRow]:
        """One "every object ." row per video of ``rows``: what GRPO's ranks draw their CE rows from."""
        return every_object_rows(rows, facts, len({r.vid for r in rows}), self.seed)
