"""The DeepSpeed config dict built from the typed ``DeepSpeedConfig`` (one place, all stages)."""

from __future__ import annotations

from aurora_rl.config.schema import DeepSpeedConfig


def deepspeed_config(ds: DeepSpeedConfig, micro_batch: int, grad_accum: int, dtype: str = "float32") -> dict:
    """A config for ``deepspeed.initialize`` with a client optimizer.

    The optimizer is created by the caller (torch AdamW) and passed in, so no DeepSpeed C++ op
    is compiled on first use; ``zero_allow_untested_optimizer`` permits that under ZeRO.
    """
    zero: dict = {"stage": ds.zero_stage}
    if ds.zero_stage >= 1:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": ds.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def with_every_parameter(loss, module):
    """``loss`` plus 0 x every trainable parameter of ``module``: the same value, and a gradient
    (zero where the batch did not reach) for every parameter.

    ZeRO-2 reduces gradients in buckets filled as they arrive, so every rank must produce the same
    ones. A rank whose rows have no [SEG] ("every object ." rows, cut-off completions) never
    reaches the projector and the mask decoder, and gloo then aborts on a size mismatch.
    """
    return loss + 0.0 * sum(p.sum() for p in module.parameters() if p.requires_grad)
