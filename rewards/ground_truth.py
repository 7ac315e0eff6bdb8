"""Ground truth of a Ref-AVS row for the reward workers: masks, true class, null flag.

Reads only metadata.csv, the mask PNGs and (synthetic data) scene_facts.jsonl — never frames or
audio, so a reward worker stays cheap. Real Ref-AVS has no scene facts: the true class is then
the class part of the uid (``<vid>_<class>_<n>``). Null rows (split test_n, or facts of kind
"null") have empty masks and no class. A row is named by its metadata line (uids repeat in the
official metadata: the same clip with another object or expression). Recent rows are kept in an
LRU cache because the G completions of a group (and retries) ask for the same row in turn.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.errors import DataError
from aurora_rl.data.media_io import evenly_spaced, mask_to_array, open_image
from aurora_rl.data.scene_facts import load_scene_facts


class Truth(NamedTuple):
    masks: np.ndarray  # uint8 [T, M, M] in {0, 1}, read-only (shared through the cache)
    target_class: Optional[str]  # None for a null row
    is_null: bool


class GroundTruth:
    """row (metadata line) -> ``Truth``.

    Args:
        data_root: the Ref-AVS folder (metadata.csv, gt_mask/, optional scene_facts.jsonl).
        split: keep only this split's rows; None keeps every split.
        mask_size: masks are resized (nearest) to mask_size x mask_size, as the dataset does.
        num_frames: frames per clip, evenly spaced over the 10 on disk (as RefAVSDataset).
        cache_size: how many rows' masks stay in memory.
    """

    def __init__(
        self,
        data_root: str | Path,
        split: Optional[str],
        mask_size: int,
        *,
        num_frames: int = layout.NUM_FRAMES,
        cache_size: int = 256,
    ):
        self.root = Path(data_root)
        self.rows = {r.line: r for r in layout.read_metadata(self.root) if split is None or r.split == split}
        self.facts = load_scene_facts(self.root)
        self.mask_size = mask_size
        self.frame_indices = evenly_spaced(layout.NUM_FRAMES, num_frames)
        self._lookup = lru_cache(maxsize=cache_size)(self._load)

    def __contains__(self, row: int) -> bool:
        return row in self.rows

    def __call__(self, row: int) -> Truth:
        """The truth of metadata line ``row``; DataError naming metadata.csv (unknown row) or the mask file."""
        return self._lookup(row)

    def row_of(self, uid: str) -> int:
        """The first row of ``uid`` (for data whose uids are unique, as the synthetic benchmark's)."""
        return next(line for line, r in self.rows.items() if r.uid == uid)

    def cache_info(self):
        return self._lookup.cache_info()

    def _load(self, line: int) -> Truth:
        row = self.rows.get(line)
        if row is None:
            raise DataError(layout.metadata_path(self.root), f"row {line!r} is not in this ground truth")
        masks = np.stack(
            [
                mask_to_array(open_image(layout.mask_path(self.root, row.vid, row.fid, i)), self.mask_size)
                for i in self.frame_indices
            ]
        )
        masks.setflags(write=False)
        facts = self.facts.get(row.uid)
        if facts is not None:
            is_null = row.split == layout.NULL_SPLIT or facts["expression_kind"] == "null"
            target = facts["target_class"]
        else:
            is_null = row.split == layout.NULL_SPLIT
            target = layout.uid_class(row.uid)
        return Truth(masks, None if is_null else target, is_null)
