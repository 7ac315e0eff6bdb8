"""GRPO math: group advantages and the clipped policy loss (pure functions of tensors)."""
