"""What the sampled completions of a GRPO step look like, for its log: how long they are, how
many ran into the sampling budget, how many reflect.

A completion that reaches ``max_new_tokens`` was cut: it has no final [SEG], so it scores as
malformed, and the group teaches the policy away from whatever made it long. A reflective
answer (a first path, the trigger, a corrected path) is the answer most at risk: its share is
logged next to the cut share, so a policy that stops reflecting because of the budget shows in
the curves.
"""

from __future__ import annotations

from aurora_rl.prompts.answer_format import parse_answer


def completion_shares(texts: list[str], lengths: list[int], max_new_tokens: int) -> dict[str, float]:
    """Mean completion length in tokens, the share that reached ``max_new_tokens`` (cut) and the
    share with more than one reasoning path (reflective)."""
    if len(texts) != len(lengths):
        raise ValueError(f"{len(texts)} completion texts but {len(lengths)} lengths")
    if not texts:
        return {"completion_tokens": 0.0, "truncated": 0.0, "reflective": 0.0}
    n = len(texts)
    return {"completion_tokens": sum(lengths) / n,
            "truncated": sum(length >= max_new_tokens for length in lengths) / n,
            "reflective": sum(parse_answer(text).attempts > 1 for text in texts) / n}
