"""The one function that turns token ids plus media features into the LLM's input embeddings.

Training, evaluation and vLLM rollouts (``prompt_embeds``) all go through ``splice_media``,
so the three see identical inputs. Each media placeholder token (``<video>``, ``<audio>``)
in the ids is replaced by that clip's sequence of media embeddings.
"""

from __future__ import annotations

import torch


def splice_media(
    input_ids: torch.Tensor, token_embeds: torch.Tensor, media: dict[int, torch.Tensor],
    media_before: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each placeholder token by its media embeddings.

    Args:
        input_ids: [L] int64 token ids of one sequence.
        token_embeds: [L, H] the embedding table's rows for ``input_ids``.
        media: placeholder token id -> [n, H] embeddings of that medium for this clip.
        media_before: only placeholders at positions < this are spliced (the prompt); a
            placeholder token that a sampled completion happens to contain stays a token.
    Returns:
        embeds: [L', H] with L' = L + sum over placeholders found of (n - 1).
        source: [L'] int64, the index in ``input_ids`` each row came from, or -1 for media rows
            (used to place labels and to find the [SEG] position after splicing).
    """
    pieces, source = [], []
    start = 0
    is_media = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in media:
        is_media |= input_ids == token_id
    if media_before is not None:
        is_media[media_before:] = False
    for pos in torch.nonzero(is_media).flatten().tolist():
        if pos > start:
            pieces.append(token_embeds[start:pos])
            source.append(torch.arange(start, pos))
        feats = media[int(input_ids[pos])]
        pieces.append(feats.to(token_embeds.dtype))
        source.append(torch.full((feats.shape[0],), -1, dtype=torch.long))
        start = pos + 1
    if start < len(input_ids):
        pieces.append(token_embeds[start:])
        source.append(torch.arange(start, len(input_ids)))
    return torch.cat(pieces), torch.cat(source)
