"""Evaluation: scoring predictions with the official metrics, tables, per-sample outputs, baselines."""
