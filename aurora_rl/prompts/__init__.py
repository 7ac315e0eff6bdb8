"""Prompt, answer format and chain-of-thought text."""
