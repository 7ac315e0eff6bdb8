"""One GRPO learner step in torch alone, on the process's device (no Ray).

``load_models`` puts the policy and its frozen KL reference on the device; ``step_inputs`` turns
a step's scored completions into the objective's view and their policy inputs; ``learn_step``
takes the optimizer step through a DeepSpeed engine. ``learner/grpo_learner.py`` (the Ray actor of
each rank) calls them; ``bench/gpu_paths.py`` runs them on one GPU without Ray.
"""

from __future__ import annotations

from typing import Optional

from aurora_rl.config.schema import GRPOConfig


def load_models(checkpoint: str, cfg: GRPOConfig, device) -> tuple:
    """The policy to train and its frozen KL reference (None without a KL term), both on
    ``device``; with the tokenizer, model config and media shape."""
    import copy

    from aurora_rl.model.checkpoint import load_policy

    policy, tokenizer, model_cfg, shape = load_policy(checkpoint)
    policy.to(device)
    reference = None
    if cfg.objective.kl_coef > 0:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if not cfg.learner.train_encoders:
        policy.vision.requires_grad_(False)
        policy.audio.requires_grad_(False)
    return policy, reference, tokenizer, model_cfg, shape


def step_inputs(records: list, advantages: list[float], dataset, cfg: GRPOConfig, seg_token: int, rank: int,
                step: int, version: Optional[int] = None):
    """The objective's view of one step's completions, and ``inputs(rows)``: the policy inputs
    of some of them (the clips from the training split, each distinct one read once), on the CPU.
    ``version``: the learner's policy version before the step, whence each record's lag (None:
    every record counts as sampled by the current weights)."""
    import numpy as np

    from aurora_rl.data.clip_sample import collate_clips
    from aurora_rl.grpo.objective import step_batch
    from aurora_rl.model.mask_loss import pick_mask_frames
    from aurora_rl.model.policy import PolicyInputs

    indices = [int(r.meta["dataset_index"]) for r in records]
    loaded = {i: dataset[i] for i in dict.fromkeys(indices)}  # a group's completions share a clip: read once
    clips = collate_clips([loaded[i] for i in indices])
    rng = np.random.default_rng([cfg.run.seed, step, rank])
    frames, gt, valid = pick_mask_frames(clips["masks"], clips["mask_valid"], cfg.learner.mask_frames_per_clip, rng)
    sampled = [supervised_frames(r.masks(), None if frames is None else frames[i]) for i, r in enumerate(records)]
    batch = step_batch([r.completion_token_ids for r in records], [r.sampling_logprobs for r in records],
                       advantages, gt, valid, [(r.rewards or {}).get("iou", 0.0) for r in records], seg_token,
                       cfg.objective, None if version is None else [version - r.policy_version for r in records],
                       sampled)

    def inputs(rows: list[int]) -> PolicyInputs:
        return PolicyInputs([records[i].prompt_token_ids.tolist() for i in rows],
                            [records[i].completion_token_ids.tolist() for i in rows],
                            clips["frames"][rows], clips["fbank"][rows], clips["fbank_lengths"][rows],
                            [clips["vid"][i] for i in rows], None if frames is None else frames[rows],
                            clips["frame_box"][rows])

    return batch, inputs


def supervised_frames(masks, frames):
    """A record's [T, M, M] masks at the frames the learner supervises (``frames``: their
    indices; None: all), or None without masks."""
    if masks is None:
        return None
    return masks if frames is None else masks[frames.numpy()]


def learn_step(engine, reference, batch, inputs, n: int, mix, cfg: GRPOConfig, device) -> dict:
    """One optimizer step of ``engine`` (DeepSpeed's, around the policy on ``device``) on ``n``
    completions: ``batch`` (the objective's view), ``inputs(rows)`` (their policy inputs, on the
    CPU), ``mix`` (the data mix's rows, or None); ``reference`` the frozen KL reference or None.

    With ``learner.micro_batch`` the completions go through the model in chunks, each weighted
    by its share of the batch's loss. The gradients of all chunks but the last are summed here,
    and the last chunk's loss carries them into DeepSpeed's one backward of the step
    (``sum(p * g)`` has gradient ``g``): one backward per step on every rank, however many
    chunks each rank has. The config allows it with ZeRO stage 0 or 1 only (see LearnerConfig).
    Every input and the skip flag's collective tensor go to ``device``.

    The policy and the reference score the completions under the distribution the actors sampled
    them from (``rollout.sampling``: temperature, top-p), the one the recorded log-probabilities
    are of; the data mix's rows under the model's own softmax, as in SFT.
    """
    import torch

    from aurora_rl.grpo.objective import grpo_loss
    from learner.deepspeed_config import with_every_parameter

    sampling = cfg.rollout.sampling
    size = cfg.learner.micro_batch or max(1, n)
    chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    params = [p for p in engine.module.parameters() if p.requires_grad]
    summed = None  # gradients of the chunks before the last
    totals: dict[str, float] = {}
    finite = True
    for k, chunk in enumerate(chunks):
        last = k == len(chunks) - 1
        # only the last chunk runs through the engine, whose backward hooks belong to its one backward;
        # the mix's rows once a step, in the engine's backward
        model = engine if last else engine.module
        rows = inputs(chunk).to(device)
        out = model(rows, sampling=sampling)
        ref = None
        if reference is not None:
            with torch.no_grad():
                ref = reference(rows, with_masks=False, sampling=sampling).answer_logprobs
            ref = ref[:, :out.answer_logprobs.shape[1]]
        mix_out = model(mix.to(device), with_masks=False) if mix is not None and last else None
        loss, parts = grpo_loss(out, batch.select(chunk), cfg.objective, ref, mix_out)
        loss = with_every_parameter(loss, engine.module)  # a rank without [SEG]s must reduce the same grads
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value
        finite = bool(torch.isfinite(loss.detach()))
        if not finite or last:
            break
        grads = torch.autograd.grad(loss, params)
        if summed is None:  # own, dense copies (a gradient may be a broadcast view)
            summed = [g.clone(memory_format=torch.contiguous_format) for g in grads]
        else:
            summed = [s.add_(g) for s, g in zip(summed, grads)]
    # A non-finite loss on any rank skips the step on every rank (their collectives must match):
    # no backward, no optimizer step, the weights stay as they were; the driver counts and logs it.
    flag = torch.tensor([float(finite)], device=device)  # NCCL reduces CUDA tensors only
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    skipped = flag.item() < 1.0
    grad_norm = None
    if not skipped:
        if summed is not None:
            loss = loss + sum((p * g).sum() for p, g in zip(params, summed))
        engine.backward(loss)
        engine.step()
        grad_norm = engine.get_global_grad_norm()
    return {
        "skipped": float(skipped), **totals, "tokens": int(totals.get("tokens", 0)),
        "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"), "micro_batches": len(chunks),
    }
