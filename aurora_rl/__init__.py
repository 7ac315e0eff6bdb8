"""aurora_rl: reasoning-based Reference Audio-Visual Segmentation trained with the AURORA recipe on Ray."""

__version__ = "0.1.0"
