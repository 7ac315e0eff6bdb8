"""The GRPO learner: K Ray actors, one DeepSpeed rank each, stepping together.

Each rank receives its share of the step's scored completions with their advantages,
rebuilds the inputs (the clip from the training split, the prompt and completion tokens),
computes new log-probabilities and masks, and takes one optimizer step of

    loss = GRPO clipped policy loss (+ kl_coef * k3 KL to the frozen reference)
           + mask_bce * BCE + mask_dice * Dice      (rollout masks with a [SEG], against the GT;
                                                     with mask_min_iou, only those whose rollout IoU
                                                     reached it)
           + every_object_ce * CE                   (with every_object_rows: that many "every
                                                     object ." rows of the training split per rank)

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
        if not cfg.learner.train_encoders:
            self.policy.vision.requires_grad_(False)
            self.policy.audio.requires_grad_(False)
        self.dataset = RefAVSDataset.from_config(cfg.data, cfg.data.train_split, features=self.shape.audio_features)
        self.every_object = None
        if cfg.learner.every_object_rows > 0:
            self.every_object = self._every_object_batcher()
        lr = cfg.learner.optim
        params = [p for p in self.policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr.lr, weight_decay=lr.weight_decay)
        ds = deepspeed_config(cfg.learner.deepspeed, micro_batch=1, grad_accum=1, dtype=self.model_cfg.dtype)
        self.engine, *_ = deepspeed.initialize(model=self.policy, optimizer=optimizer, config=ds)
        self.engine.train()
        return {"rank": self.rank, "trainable": sum(p.numel() for p in params)}

    def train_step(self, payloads: list[bytes], advantages: list[float], step: int) -> dict:
        """One optimizer step on this rank's completions (every rank must be called).

        With ``learner.micro_batch`` the completions go through the model in chunks, each weighted
        by its share of the batch's loss. The gradients of all chunks but the last are summed here,
        and the last chunk's loss carries them into DeepSpeed's one backward of the step
        (``sum(p * g)`` has gradient ``g``): one backward per step on every rank, however many
        chunks each rank has. The config allows it with ZeRO stage 0 or 1 only (see LearnerConfig).
        """
        import torch

        from aurora_rl.records import decode

        t0 = time.monotonic()
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + step * 101 + self.rank)
        records = [decode(p) for p in payloads]
        data = self._step_data(records, advantages, step)
        size = self.cfg.learner.micro_batch or max(1, len(records))
        chunks = [list(range(i, min(i + size, len(records)))) for i in range(0, len(records), size)]
        params = [p for p in self.engine.module.parameters() if p.requires_grad]
        summed = None  # gradients of the chunks before the last
        totals: dict[str, float] = {}
        finite = True
        for k, chunk in enumerate(chunks):
            # only the last chunk runs through the engine, whose backward hooks belong to its one backward
            model = self.engine if k == len(chunks) - 1 else self.engine.module
            loss, parts = self._chunk_loss(model, records, chunk, data)
            if self.every_object is not None and k == len(chunks) - 1:  # once a step, in the engine's backward
                ce = self._every_object_loss(model, step)
                extra = self.cfg.learner.every_object_ce * ce
                loss = loss + extra
                parts.update(every_object_ce=float(ce.detach()), loss=parts["loss"] + float(extra.detach()))
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            finite = bool(torch.isfinite(loss.detach()))
            if not finite or k == len(chunks) - 1:
                break
            grads = torch.autograd.grad(loss, params)
            if summed is None:  # own, dense copies (a gradient may be a broadcast view)
                summed = [g.clone(memory_format=torch.contiguous_format) for g in grads]
            else:
                summed = [s.add_(g) for s, g in zip(summed, grads)]
        # A non-finite loss on any rank skips the step on every rank (their collectives must match):
        # no backward, no optimizer step, the weights stay as they were; the driver counts and logs it.
        flag = torch.tensor([float(finite)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        skipped = flag.item() < 1.0
        grad_norm = None
        if not skipped:
            if summed is not None:
                loss = loss + sum((p * g).sum() for p, g in zip(params, summed))
            self.engine.backward(loss)
            self.engine.step()
            grad_norm = self.engine.get_global_grad_norm()
        return {
            "skipped": float(skipped), **totals, "tokens": int(totals.get("tokens", 0)),
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "micro_batches": len(chunks), "learn_s": time.monotonic() - t0,
        }

    def _every_object_batcher(self):
        """The "every object ." rows of the training split (of ``learner.every_object_data`` when
        set), one per video, in SFT batches."""
        import dataclasses

        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.data.scene_facts import load_scene_facts
        from learner.sft_data import SFTBatcher, every_object_examples

        dataset = self.dataset
        if self.cfg.learner.every_object_data:
            data = dataclasses.replace(self.cfg.data, root=self.cfg.learner.every_object_data)
            dataset = RefAVSDataset.from_config(data, data.train_split, features=self.shape.audio_features)
        videos = len({r.vid for r in dataset.rows})
        examples = every_object_examples(dataset.rows, load_scene_facts(dataset.root), videos, self.cfg.run.seed,
                                         self.cfg.learner.every_object_order)
        return SFTBatcher(examples, dataset, self.tokenizer, self.cfg.learner.every_object_rows,
                          self.world_size, self.rank, self.cfg.run.seed)

    def _every_object_loss(self, model, step: int):
        """CE of this rank's "every object ." rows of ``step`` (no masks: they have no [SEG])."""
        from learner.sft_loss import answer_ce

        epoch, in_epoch = divmod(step, self.every_object.steps_per_epoch)
        return answer_ce(model(self.every_object.batch(epoch, in_epoch)["student"], with_masks=False))

    def _step_data(self, records: list, advantages: list[float], step: int) -> dict:
        """The clips, supervised mask frames and loss weights of one step's completions."""
        import numpy as np
        import torch

        from aurora_rl.data.clip_sample import collate_clips
        from aurora_rl.model.mask_loss import pick_mask_frames

        cfg = self.cfg.learner
        indices = [int(r.meta["dataset_index"]) for r in records]
        loaded = {i: self.dataset[i] for i in dict.fromkeys(indices)}  # a group's completions share a clip: read once
        batch = collate_clips([loaded[i] for i in indices])
        rng = np.random.default_rng([self.cfg.run.seed, step, self.rank])
        frames, gt, valid = pick_mask_frames(batch["masks"], batch["mask_valid"], cfg.mask_frames_per_clip, rng)
        learn_mask = np.array([self.policy.ids.seg in r.completion_token_ids.tolist() for r in records])
        if cfg.mask_min_iou is not None:
            learn_mask &= np.array([(r.rewards or {}).get("iou", 0.0) >= cfg.mask_min_iou for r in records])
        # What each completion weighs in the loss's means: the policy loss averages completions with
        # tokens, the mask loss the supervised frames of the learned [SEG]s, the logged ratios tokens.
        has_tokens = np.array([len(r.completion_token_ids) > 0 for r in records], dtype=np.float64)
        mask_frames = (valid.sum(1).numpy() * learn_mask).astype(np.float64)
        tokens = np.array([len(r.completion_token_ids) for r in records], dtype=np.float64)
        return {"batch": batch, "frames": frames, "gt": gt, "valid": valid, "learn_mask": torch.from_numpy(learn_mask),
                "advantages": torch.tensor(advantages, dtype=torch.float32),
                "w_policy": has_tokens / max(1.0, has_tokens.sum()),
                "w_mask": mask_frames / max(1.0, mask_frames.sum()), "w_tokens": tokens / max(1.0, tokens.sum())}

    def _chunk_loss(self, model, records: list, chunk: list[int], data: dict):
        """The loss of the completions ``chunk``, weighted by their share of the step, and its
        logged parts (weighted the same way, so that the chunks' parts add up to the step's)."""
        import numpy as np
        import torch

        from aurora_rl.grpo.policy_loss import clipped_policy_loss
        from aurora_rl.model.mask_loss import mask_loss
        from aurora_rl.model.policy import PolicyInputs
        from learner.deepspeed_config import with_every_parameter

        cfg = self.cfg.learner
        batch, frames = data["batch"], data["frames"]
        records = [records[i] for i in chunk]
        inputs = PolicyInputs([r.prompt_token_ids.tolist() for r in records],
                              [r.completion_token_ids.tolist() for r in records],
                              batch["frames"][chunk], batch["fbank"][chunk], batch["fbank_lengths"][chunk],
                              [batch["vid"][i] for i in chunk], None if frames is None else frames[chunk])
        out = model(inputs)
        width = out.answer_logprobs.shape[1]
        old = torch.zeros_like(out.answer_logprobs)
        for i, r in enumerate(records):
            old[i, : len(r.sampling_logprobs)] = torch.from_numpy(r.sampling_logprobs.astype(np.float32))
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                ref = self.reference(inputs, with_masks=False).answer_logprobs[:, :width]
        stats = clipped_policy_loss(out.answer_logprobs, old, data["advantages"][chunk].to(out.answer_logprobs.dtype),
                                    out.answer_mask, cfg.clip_low, cfg.clip_high, ref, cfg.kl_coef)
        w_policy, w_mask, w_tokens = (float(data[k][chunk].sum()) for k in ("w_policy", "w_mask", "w_tokens"))
        loss = w_policy * stats.loss
        parts = {"policy_loss": w_policy * stats.policy_loss, "kl": w_policy * stats.kl,
                 "clip_fraction": w_tokens * stats.clip_fraction, "ratio_mean": w_tokens * stats.ratio_mean,
                 "mask_bce": 0.0, "mask_dice": 0.0, "tokens": int(out.answer_mask.sum())}
        seg = out.has_seg & data["learn_mask"][chunk]
        if seg.any():
            mask_total, bce, dice = mask_loss(out.mask_logits[seg], data["gt"][chunk][seg], data["valid"][chunk][seg],
                                              cfg.mask_bce, cfg.mask_dice)
            loss = loss + w_mask * mask_total
            parts.update(mask_bce=w_mask * float(bce.detach()), mask_dice=w_mask * float(dice.detach()))
        loss = with_every_parameter(loss, self.engine.module)  # a rank without [SEG]s must reduce the same grads
        parts["loss"] = float(loss.detach())
        return loss, parts

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
    def _trainable_views(self) -> dict:
        """The live trainable weights, no copy (under ZeRO they are views into one flat buffer)."""
        return {n: p.detach() for n, p in self.engine.module.named_parameters() if p.requires_grad}

    def trainable_state(self) -> dict:
        """A copy of the trainable weights to send out of the actor.

        Each tensor gets storage of its own: pickling a view pickles its whole storage, so under
        ZeRO every one of the N views would carry the full flat buffer (N times the model's size).
        """
        return {n: t.clone() for n, t in self._trainable_views().items()}

    def weight_specs(self) -> list:
        from aurora_rl.weight_sync import specs_of

        return specs_of(self._trainable_views())

    def join_broadcast(self, host: str, port: int, world_size: int, buckets: list, timeout_s: float) -> bool:
        from aurora_rl.weight_sync import BroadcastGroup

        self.group = BroadcastGroup(host, port, 0, world_size, "nccl" if self.use_gpu else "gloo", timeout_s)
        self.buckets = buckets
        return True

    def broadcast_weights(self, version: int) -> dict:
        t0 = time.monotonic()
        sent = self.group.send(self._trainable_views(), self.buckets, version)
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
