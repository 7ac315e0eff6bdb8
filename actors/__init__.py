"""Rollout actors: vLLM sampling with prompt_embeds and the [SEG] -> SAM mask pass."""
