"""Reward functions (format, IoU, class) and the Ray reward-worker pool."""
