"""The policy model: audio-visual LLM, the [SEG] projector and SAM as the mask head."""
