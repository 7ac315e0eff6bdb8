"""The clips an evaluation reads: a clip that cannot be read ends it (``fail``, the default) or is
skipped, named and counted (``skip``: ``aurora-rl eval --on-bad-clip skip``).

A skipped clip becomes a skip record in the stream of predictions, in its row's place: the
``EvaluationWriter`` lists it under its split (``results.json``: ``skipped``, each with its
``uid@row`` key and the error naming the file) and the metrics cover the clips that were read.
"""

from __future__ import annotations

from typing import Literal, Sequence

from aurora_rl.data.errors import DataError

OnBadClip = Literal["fail", "skip"]
ON_BAD_CLIP = ("fail", "skip")


def load_clips(dataset, indices: Sequence[int], split: str, on_bad_clip: OnBadClip = "fail"
               ) -> tuple[list[int], list, list[dict]]:
    """Items ``indices`` of ``dataset`` (a Ref-AVS or AVSBench reader) -> (the indices read, their
    ClipSamples, the skip records of the others). ``fail``: a DataError propagates. Only a
    DataError is skipped: any other exception is a bug, not a bad file."""
    kept, clips, skipped = [], [], []
    for index in indices:
        try:
            clip = dataset[index]
        except DataError as e:
            if on_bad_clip != "skip":
                raise
            row = dataset.rows[index]
            skipped.append({"index": index, "sample": 0, "split": split, "uid": row.uid, "row": row.line,
                            "skipped": str(e)})
            continue
        kept.append(index)
        clips.append(clip)
    return kept, clips, skipped
