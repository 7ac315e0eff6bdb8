"""The GRPO learner: K Ray actors, one DeepSpeed rank each, stepping together.

Each rank receives its share of the step's scored completions with their advantages,
rebuilds the inputs (the clip from the training split, the prompt and completion tokens),
runs the policy (and the frozen reference, with a KL term) over them, and takes one optimizer
step of the GRPO objective (``aurora_rl/grpo/objective.py``: every loss term is there). With
``mix.every_object_rows``, the step also runs that many "every object ." rows of the data mix,
whose CE the objective adds.

DeepSpeed averages gradients across ranks. Rank 0 also owns the weight broadcast.
"""

from __future__ import annotations

import os
import time

import ray

from aurora_rl.config.schema import GRPOConfig
from aurora_rl.services.library_logs import capture_output


RENDEZVOUS_TIMEOUT_S = 600.0  # ranks load the policy before they meet; a slow one may take minutes


@ray.remote(num_cpus=1, max_restarts=0)
class LearnerRank:
    def __init__(self, rank: int, world_size: int, cfg: GRPOConfig, checkpoint: str, use_gpu: bool = False,
                 log_file: str | None = None):
        capture_output(log_file)  # DeepSpeed's and torch's output: to the run folder, not the console
        if not use_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        self.rank, self.world_size, self.use_gpu = rank, world_size, use_gpu
        self.cfg, self.checkpoint = cfg, checkpoint
        self.group = None
        self.buckets = None
        self.store = None  # rank 0: the store the next group (DeepSpeed's, then the broadcast's) meets at

    def open_store(self, world_size: int, timeout_s: float) -> tuple[str, int]:
        """Rank 0: a store for the next group to meet at, on this node; its address.

        The OS picks the port as the store binds it, so no other process can take it between
        choosing and listening (weight_sync.open_store).
        """
        from aurora_rl.weight_sync import open_store

        host = ray.util.get_node_ip_address()
        self.store = open_store(host, world_size, timeout_s)
        return host, self.store.port

    def setup(self, master_addr: str, master_port: int) -> dict:
        """Join the DeepSpeed group (a collective: call on every rank at once) and build the engine.

        Rank 0 meets the others at the store it opened (``open_store``).
        """
        import copy
        import datetime

        import deepspeed
        import torch

        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.model.checkpoint import load_policy
        from learner.deepspeed_config import deepspeed_config

        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        from aurora_rl.services.devices import role_device

        cfg = self.cfg
        # stops by name, before anything loads, when the rank has no GPU it can use
        role_device(f"learner rank {self.rank}", 1 if self.use_gpu else 0)
        backend = "nccl" if self.use_gpu else "gloo"
        store, self.store = self.store, None
        if store is None:
            store = torch.distributed.TCPStore(master_addr, master_port, self.world_size, is_master=False,
                                               timeout=datetime.timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
        torch.distributed.init_process_group(backend, store=store, rank=self.rank, world_size=self.world_size)
        deepspeed.init_distributed(dist_backend=backend)  # takes the group made here
        self.policy, self.tokenizer, self.model_cfg, self.shape = load_policy(self.checkpoint)
        self.reference = None
        if cfg.objective.kl_coef > 0:
            self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        if not cfg.learner.train_encoders:
            self.policy.vision.requires_grad_(False)
            self.policy.audio.requires_grad_(False)
        self.dataset = RefAVSDataset.from_config(cfg.data, cfg.data.train_split, **self.shape.reader_options())
        self.every_object = None
        if cfg.mix.every_object_rows > 0:
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

        from aurora_rl.grpo.objective import grpo_loss
        from aurora_rl.records import decode
        from learner.deepspeed_config import with_every_parameter

        t0 = time.monotonic()
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + step * 101 + self.rank)
        records = [decode(p) for p in payloads]
        batch, inputs = self._step_inputs(records, advantages, step)
        size = self.cfg.learner.micro_batch or max(1, len(records))
        chunks = [list(range(i, min(i + size, len(records)))) for i in range(0, len(records), size)]
        params = [p for p in self.engine.module.parameters() if p.requires_grad]
        summed = None  # gradients of the chunks before the last
        totals: dict[str, float] = {}
        finite = True
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            # only the last chunk runs through the engine, whose backward hooks belong to its one backward
            model = self.engine if last else self.engine.module
            # the mix's rows once a step, in the engine's backward
            out, ref, mix_out = self._outputs(model, inputs(chunk), step if last else None)
            loss, parts = grpo_loss(out, batch.select(chunk), self.cfg.objective, ref, mix_out)
            loss = with_every_parameter(loss, self.engine.module)  # a rank without [SEG]s must reduce the same grads
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

    def _outputs(self, model, rows, mix_step=None) -> tuple:
        """The policy's outputs on ``rows``, the frozen reference's log-probabilities of the same
        answers (None without a KL term), and the outputs on the data mix's rows of ``mix_step``
        (None when not given or the mix adds none)."""
        import torch

        out = model(rows)
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                ref = self.reference(rows, with_masks=False).answer_logprobs[:, :out.answer_logprobs.shape[1]]
        mix_out = None
        if self.every_object is not None and mix_step is not None:
            epoch, in_epoch = divmod(mix_step, self.every_object.steps_per_epoch)
            mix_out = model(self.every_object.batch(epoch, in_epoch)["student"], with_masks=False)
        return out, ref, mix_out

    def _every_object_batcher(self):
        """The data mix's "every object ." rows of the training split (of ``mix.every_object_data``
        when set), one per video, in SFT batches of ``mix.every_object_rows`` per rank."""
        import dataclasses

        from aurora_rl.data.mix import DataMix
        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.data.scene_facts import load_scene_facts
        from learner.sft_data import SFTBatcher, listing_example

        mix, dataset = self.cfg.mix, self.dataset
        if mix.every_object_data:
            data = dataclasses.replace(self.cfg.data, root=mix.every_object_data)
            dataset = RefAVSDataset.from_config(data, data.train_split, **self.shape.reader_options())
        rows = DataMix(mix, self.cfg.run.seed).grpo_rows(dataset.rows, load_scene_facts(dataset.root))
        return SFTBatcher([listing_example(r) for r in rows], dataset, self.tokenizer, mix.every_object_rows,
                          self.world_size, self.rank, self.cfg.run.seed)

    def _step_inputs(self, records: list, advantages: list[float], step: int):
        """The objective's view of one step's completions, and ``inputs(rows)``: the policy inputs
        of some of them (the clips from the training split, each distinct one read once)."""
        import numpy as np

        from aurora_rl.data.clip_sample import collate_clips
        from aurora_rl.grpo.objective import step_batch
        from aurora_rl.model.mask_loss import pick_mask_frames
        from aurora_rl.model.policy import PolicyInputs

        indices = [int(r.meta["dataset_index"]) for r in records]
        loaded = {i: self.dataset[i] for i in dict.fromkeys(indices)}  # a group's completions share a clip: read once
        clips = collate_clips([loaded[i] for i in indices])
        rng = np.random.default_rng([self.cfg.run.seed, step, self.rank])
        frames, gt, valid = pick_mask_frames(clips["masks"], clips["mask_valid"], self.cfg.learner.mask_frames_per_clip,
                                             rng)
        batch = step_batch([r.completion_token_ids for r in records], [r.sampling_logprobs for r in records],
                           advantages, gt, valid, [(r.rewards or {}).get("iou", 0.0) for r in records],
                           self.policy.ids.seg, self.cfg.objective)

        def inputs(rows: list[int]) -> PolicyInputs:
            return PolicyInputs([records[i].prompt_token_ids.tolist() for i in rows],
                                [records[i].completion_token_ids.tolist() for i in rows],
                                clips["frames"][rows], clips["fbank"][rows], clips["fbank_lengths"][rows],
                                [clips["vid"][i] for i in rows], None if frames is None else frames[rows],
                                clips["frame_box"][rows])

        return batch, inputs

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

    def join_broadcast(self, world_size: int, buckets: list, timeout_s: float) -> bool:
        """Rank 0: open the broadcast group at the store ``open_store`` made (the others join it)."""
        from aurora_rl.weight_sync import BroadcastGroup

        store, self.store = self.store, None
        self.group = BroadcastGroup("", 0, 0, world_size, self.cfg.broadcast_backend, timeout_s, store=store)
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
