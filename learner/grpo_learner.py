"""The GRPO learner: K Ray actors, one DeepSpeed rank each, stepping together.

Each rank receives its share of the step's scored completions with their advantages,
rebuilds the inputs (the clip from the training split, the prompt and completion tokens),
computes new log-probabilities and masks, and takes one optimizer step of

    loss = GRPO clipped policy loss (+ kl_coef * k3 KL to the frozen reference)
           + mask_bce * BCE + mask_dice * Dice      (rollout masks with a [SEG], against the GT)

DeepSpeed averages gradients across ranks. Rank 0 also owns the weight broadcast.
"""

from __future__ import annotations

import os
import time

import ray


@ray.remote(num_cpus=1, max_restarts=0)
class LearnerRank:
    def __init__(self, rank: int, world_size: int, cfg: dict, checkpoint: str, use_gpu: bool = False):
        if not use_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        self.rank, self.world_size, self.use_gpu = rank, world_size, use_gpu
        self.cfg_dict, self.checkpoint = cfg, checkpoint
        self.group = None
        self.buckets = None

    def free_address(self) -> tuple[str, int]:
        """This node's address and a free port on it (for the DeepSpeed rendezvous and the broadcast store)."""
        from aurora_rl.services.process import free_port

        host = ray.util.get_node_ip_address()
        return host, free_port(host)

    def setup(self, master_addr: str, master_port: int) -> dict:
        """Join the DeepSpeed group (a collective: call on every rank at once) and build the engine."""
        import copy

        import deepspeed
        import torch

        from aurora_rl.config.loader import build
        from aurora_rl.config.schema import GRPOConfig
        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.model.checkpoint import load_policy
        from learner.deepspeed_config import deepspeed_config

        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        self.cfg = cfg = build(GRPOConfig, self.cfg_dict, {}, "<grpo config>")
        deepspeed.init_distributed(dist_backend="nccl" if self.use_gpu else "gloo")
        self.policy, self.tokenizer, self.model_cfg, self.shape = load_policy(self.checkpoint)
        self.reference = None
        if cfg.learner.kl_coef > 0:
            self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.dataset = RefAVSDataset.from_config(cfg.data, cfg.data.train_split, features=self.shape.audio_features)
        lr = cfg.learner.optim
        params = [p for p in self.policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr.lr, weight_decay=lr.weight_decay)
        ds = deepspeed_config(cfg.learner.deepspeed, micro_batch=1, grad_accum=1, dtype=self.model_cfg.dtype)
        self.engine, *_ = deepspeed.initialize(model=self.policy, optimizer=optimizer, config=ds)
        self.engine.train()
        return {"rank": self.rank, "trainable": sum(p.numel() for p in params)}

    def train_step(self, payloads: list[bytes], advantages: list[float], step: int) -> dict:
        """One optimizer step on this rank's completions (every rank must be called)."""
        import numpy as np
        import torch

        from aurora_rl.data.clip_sample import collate_clips
        from aurora_rl.grpo.policy_loss import clipped_policy_loss
        from aurora_rl.model.mask_loss import mask_loss, pick_mask_frames
        from aurora_rl.model.policy import PolicyInputs
        from aurora_rl.records import decode

        t0 = time.monotonic()
        cfg = self.cfg.learner
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + step * 101 + self.rank)
        records = [decode(p) for p in payloads]
        indices = [int(r.meta["dataset_index"]) for r in records]
        loaded = {i: self.dataset[i] for i in dict.fromkeys(indices)}  # a group's completions share a clip: read once
        clips = [loaded[i] for i in indices]
        batch = collate_clips(clips)
        rng = np.random.default_rng([self.cfg.run.seed, step, self.rank])
        frames, gt, valid = pick_mask_frames(batch["masks"], batch["mask_valid"], cfg.mask_frames_per_clip, rng)
        inputs = PolicyInputs([r.prompt_token_ids.tolist() for r in records],
                              [r.completion_token_ids.tolist() for r in records],
                              batch["frames"], batch["fbank"], batch["fbank_lengths"], batch["vid"], frames)
        out = self.engine(inputs)
        width = out.answer_logprobs.shape[1]
        old = torch.zeros_like(out.answer_logprobs)
        for i, r in enumerate(records):
            old[i, : len(r.sampling_logprobs)] = torch.from_numpy(r.sampling_logprobs.astype(np.float32))
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                ref = self.reference(inputs, with_masks=False).answer_logprobs[:, :width]
        adv = torch.tensor(advantages, dtype=out.answer_logprobs.dtype)
        stats = clipped_policy_loss(out.answer_logprobs, old, adv, out.answer_mask, cfg.clip_low, cfg.clip_high,
                                    ref, cfg.kl_coef)
        loss = stats.loss
        seg = out.has_seg
        bce = dice = 0.0
        if seg.any():
            mask_total, bce_t, dice_t = mask_loss(out.mask_logits[seg], gt[seg], valid[seg], cfg.mask_bce,
                                                  cfg.mask_dice)
            loss = loss + mask_total
            bce, dice = float(bce_t.detach()), float(dice_t.detach())
        # Every rank must produce a gradient for every trainable parameter, or ZeRO's gradient
        # reductions differ between ranks and the collective breaks: a rank whose completions
        # have no [SEG] never reaches the projector and mask decoder, so touch them with weight 0.
        loss = loss + 0.0 * sum(p.sum() for p in self.engine.module.parameters() if p.requires_grad)
        # A non-finite loss on any rank skips the step on every rank (their collectives must match):
        # no backward, no optimizer step, the weights stay as they were; the driver counts and logs it.
        finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        skipped = bool(finite.item() < 1.0)
        grad_norm = None
        if not skipped:
            self.engine.backward(loss)
            self.engine.step()
            grad_norm = self.engine.get_global_grad_norm()
        return {
            "skipped": float(skipped),
            "loss": float(loss.detach()), "policy_loss": stats.policy_loss, "kl": stats.kl,
            "clip_fraction": stats.clip_fraction, "ratio_mean": stats.ratio_mean, "mask_bce": bce, "mask_dice": dice,
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "tokens": int(out.answer_mask.sum()), "learn_s": time.monotonic() - t0,
        }

    def first_token_logprobs(self, indices: list[int]) -> list[list[float]]:
        """The training forward's log-probabilities of the first answer token (eval mode)."""
        import torch

        from aurora_rl.data.clip_sample import collate_clips
        from aurora_rl.model.policy import PolicyInputs
        from aurora_rl.prompts.answer_format import build_prompt

        clips = [self.dataset[i] for i in indices]
        batch = collate_clips(clips)
        prompts = [self.tokenizer(build_prompt(c.expression), add_special_tokens=False).input_ids for c in clips]
        module = self.engine.module
        module.eval()
        with torch.no_grad():
            out = module(PolicyInputs(prompts, [[] for _ in clips], batch["frames"], batch["fbank"],
                                      batch["fbank_lengths"]), with_masks=False)
        module.train()
        return out.first_token_logits.log_softmax(-1).tolist()

    # ---------------------------------------------------------------- weights
    def trainable_state(self) -> dict:
        return {n: p.detach() for n, p in self.engine.module.named_parameters() if p.requires_grad}

    def weight_specs(self) -> list:
        from learner.weight_sync import specs_of

        return specs_of(self.trainable_state())

    def join_broadcast(self, host: str, port: int, world_size: int, buckets: list, timeout_s: float) -> bool:
        from learner.weight_sync import BroadcastGroup

        self.group = BroadcastGroup(host, port, 0, world_size, "nccl" if self.use_gpu else "gloo", timeout_s)
        self.buckets = buckets
        return True

    def broadcast_weights(self, version: int) -> dict:
        t0 = time.monotonic()
        sent = self.group.send(self.trainable_state(), self.buckets, version)
        elapsed = time.monotonic() - t0
        return {"bytes": sent, "seconds": elapsed, "gb_per_s": sent / elapsed / 1e9 if elapsed > 0 else 0.0}

    def leave_broadcast(self) -> None:
        if self.group is not None:
            self.group.close()
        self.group = None

    # ---------------------------------------------------------------- checkpoints
    def save(self, folder: str, client_state: dict) -> str:
        """All ranks: DeepSpeed state (model, sharded optimizer); rank 0 also the policy checkpoint."""
        from pathlib import Path

        from aurora_rl.model.checkpoint import save_policy

        self.engine.save_checkpoint(folder, tag="state", client_state=client_state)
        if self.rank == 0:
            save_policy(self.engine.module, self.tokenizer, self.model_cfg, self.shape, Path(folder) / "policy")
        return folder

    def load(self, folder: str) -> dict:
        _, client = self.engine.load_checkpoint(folder, tag="state")
        return client

    def shutdown(self) -> None:
        import torch.distributed as dist

        self.leave_broadcast()
        self.engine.destroy()
        dist.barrier()
        dist.destroy_process_group()
