"""The learner side: DeepSpeed GRPO ranks, weight broadcast, SFT stages as Ray Train jobs."""
