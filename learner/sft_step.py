"""One SFT step in torch alone, on the process's device (no Ray).

``load_models`` puts the student and the distillation teacher on the device; ``sft_step`` moves
a batch there and takes the optimizer step through a DeepSpeed engine. The Ray Train workers of
the SFT stages (``learner/sft_worker.py``) call them; ``bench/gpu_paths.py`` runs them on one GPU
without Ray.
"""

from __future__ import annotations


def load_models(init_dir: str, teacher_dir: str | None, device) -> tuple:
    """The student to train and the frozen distillation teacher (None without one), both on
    ``device``; with the student's tokenizer, model config and media shape."""
    from aurora_rl.model.checkpoint import load_policy
    from learner.sft_data import check_teacher_vocabulary

    policy, tokenizer, model_cfg, shape = load_policy(init_dir)
    policy.to(device)
    teacher = None
    if teacher_dir:
        teacher, teacher_tokenizer, *_ = load_policy(teacher_dir)
        teacher.to(device).eval().requires_grad_(False)
        check_teacher_vocabulary(teacher_tokenizer, tokenizer, teacher_dir)
    return policy, teacher, tokenizer, model_cfg, shape


def sft_step(engine, teacher, batch: dict, loss_cfg, device) -> dict:
    """One optimizer step of ``engine`` (a DeepSpeed engine around the policy) on an SFT batch
    (``SFTBatcher.batch``, built on the CPU); the loss parts and the gradient norm.

    The batch goes to ``device`` (the process's, where the engine's model and the teacher are);
    the teacher's [SEG] embeddings are the distillation targets of the rows that segment.
    """
    import torch

    from aurora_rl.model.sft_loss import sft_loss
    from learner.deepspeed_config import with_every_parameter

    out = engine(batch["student"].to(device))
    teacher_seg = teacher_has = None
    if teacher is not None:
        with torch.no_grad():
            t_out = teacher(batch["teacher"].to(device), with_masks=False)
        teacher_seg, teacher_has = t_out.seg_embedding, t_out.has_seg & batch["segment"].to(device)
    loss, parts = sft_loss(out, batch["masks"].to(device), batch["mask_valid"].to(device), loss_cfg, teacher_seg,
                           teacher_has)
    loss = with_every_parameter(loss, engine.module)  # a rank whose rows have no [SEG] reduces the same grads
    engine.backward(loss)
    engine.step()
    grad_norm = engine.get_global_grad_norm()
    parts["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
    return parts
