"""Command groups of the ``aurora-rl`` CLI (one module per group)."""
