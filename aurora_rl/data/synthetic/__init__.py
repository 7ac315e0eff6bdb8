"""A synthetic Ref-AVS benchmark: small scenes of shapes that sound, in the official layout.

Parts: ``catalog`` (classes, colours, positions), ``scene`` (sampling), ``render`` (frames and
masks), ``audio_synth`` (sound signatures), ``expressions`` (referring expressions by cue),
``writer`` (the Ref-AVS files and scene facts). See docs/DATA.md for the design.
"""

from aurora_rl.data.synthetic.catalog import CLASSES, COLORS, POSITIONS, SEEN_CLASSES, UNSEEN_CLASSES
from aurora_rl.data.synthetic.expressions import synthetic_words
from aurora_rl.data.synthetic.writer import SynthConfig, generate_benchmark, split_counts

__all__ = [
    "CLASSES", "COLORS", "POSITIONS", "SEEN_CLASSES", "UNSEEN_CLASSES",
    "SynthConfig", "generate_benchmark", "split_counts", "synthetic_words",
]
