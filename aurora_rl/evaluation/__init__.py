"""Evaluation: sharded eval actors, official metrics, tables, per-sample outputs."""
