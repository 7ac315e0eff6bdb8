"""The GRPO learner: K Ray actors, one DeepSpeed rank each, stepping together.

Each rank receives its share of the step's scored completions with their advantages,
rebuilds the inputs (the clip from the training split, the prompt and completion tokens),
runs the policy (and the frozen reference, with a KL term) over them, and takes one optimizer
step of the GRPO objective (``aurora_rl/grpo/objective.py``: every loss term is there). With
``mix.every_object_rows``, the step also runs that many "every object ." rows of the data mix,
whose CE the objective adds.

DeepSpeed averages gradients across ranks. Rank 0 also owns the weight broadcast, which runs in
the rank's "weights" thread: with an asynchronous job (``learner.max_policy_lag >= 1``) it sends a
copy of the weights taken after the step (``snapshot_weights``) while the next step trains.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import ray

from aurora_rl.config.schema import GRPOConfig
from aurora_rl.services.library_logs import capture_output
from learner.grpo_step import learn_step, load_models, step_inputs


RENDEZVOUS_TIMEOUT_S = 600.0  # ranks load the policy before they meet; a slow one may take minutes


@ray.remote(num_cpus=1, max_restarts=0, concurrency_groups={"weights": 1})
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
        self.store_prefix = ""  # and that group's key prefix (weight_sync.new_key_prefix)
        self.outgoing: tuple[int, dict] | None = None  # (version, a copy of the weights) to broadcast

    def open_store(self, world_size: int, timeout_s: float) -> tuple[str, int, str]:
        """Rank 0: a store for the next group to meet at, on this node's private address; its
        address and the group's key prefix.

        The OS picks the port as the store binds it, so no other process can take it between
        choosing and listening (weight_sync.open_store).
        """
        from aurora_rl.weight_sync import new_key_prefix, open_store

        host = ray.util.get_node_ip_address()
        self.store, self.store_prefix = open_store(host, world_size, timeout_s), new_key_prefix()
        return host, self.store.port, self.store_prefix

    def setup(self, master_addr: str, master_port: int, key_prefix: str) -> dict:
        """Join the DeepSpeed group (a collective: call on every rank at once) and build the engine.

        Rank 0 meets the others at the store it opened (``open_store``).
        """
        import deepspeed
        import torch

        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.weight_sync import store_at
        from learner.deepspeed_config import deepspeed_config
        from learner.safe_load import weights_only_loads

        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        from aurora_rl.services.devices import role_device

        cfg = self.cfg
        # stops by name, before anything loads, when the rank has no GPU it can use; the model, its
        # reference, every batch and the step's collective tensors go to this device
        self.device = torch.device(role_device(f"learner rank {self.rank}", 1 if self.use_gpu else 0))
        backend = "nccl" if self.use_gpu else "gloo"
        store = store_at(master_addr, master_port, self.world_size, RENDEZVOUS_TIMEOUT_S, key_prefix, self.store)
        self.store = None
        torch.distributed.init_process_group(backend, store=store, rank=self.rank, world_size=self.world_size)
        deepspeed.init_distributed(dist_backend=backend)  # takes the group made here
        self.policy, self.reference, self.tokenizer, self.model_cfg, self.shape = load_models(
            self.checkpoint, cfg, self.device)
        self.dataset = RefAVSDataset.from_config(cfg.data, cfg.data.train_split, **self.shape.reader_options())
        self.every_object = None
        if cfg.mix.every_object_rows > 0:
            self.every_object = self._every_object_batcher()
        lr = cfg.learner.optim
        params = [p for p in self.policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr.lr, weight_decay=lr.weight_decay)
        ds = deepspeed_config(cfg.learner.deepspeed, micro_batch=1, grad_accum=1, dtype=self.model_cfg.dtype)
        self.engine, *_ = deepspeed.initialize(model=self.policy, optimizer=optimizer, config=ds)
        weights_only_loads(self.engine)  # a resumed checkpoint cannot run code
        self.engine.train()
        return {"rank": self.rank, "trainable": sum(p.numel() for p in params)}

    def train_step(self, payloads: list[bytes], advantages: list[float], step: int,
                   version: Optional[int] = None) -> dict:
        """One optimizer step on this rank's completions (every rank must be called): ``learn_step``.
        ``version``: the policy version before the step, against which each record's lag is
        counted (None: every record at lag 0)."""
        import torch

        from aurora_rl.records import decode

        t0 = time.monotonic()
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + step * 101 + self.rank)
        records = [decode(p) for p in payloads]
        batch, inputs = step_inputs(records, advantages, self.dataset, self.cfg, self.policy.ids.seg, self.rank, step,
                                    version)
        mix = None
        if self.every_object is not None:  # the data mix's rows, once a step
            epoch, in_epoch = divmod(step, self.every_object.steps_per_epoch)
            mix = self.every_object.batch(epoch, in_epoch)["student"]
        stats = learn_step(self.engine, self.reference, batch, inputs, len(records), mix, self.cfg, self.device)
        return {**stats, "learn_s": time.monotonic() - t0}

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

    def memory(self) -> dict:
        """The device's memory and this rank's share (``aurora-rl preflight``)."""
        from aurora_rl.services.devices import memory_report

        return memory_report(str(self.device))

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
                                      batch["fbank_lengths"]).to(self.device), with_masks=False)
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

    def snapshot_weights(self, version: int) -> int:
        """A copy of the trainable weights as version ``version``, for ``broadcast_weights`` to send
        while the next step changes the live ones (called between steps)."""
        self.outgoing = (version, self.trainable_state())
        return version

    @ray.method(concurrency_group="weights")
    def join_broadcast(self, world_size: int, buckets: list, timeout_s: float) -> bool:
        """Rank 0: open the broadcast group at the store ``open_store`` made (the others join it)."""
        from aurora_rl.weight_sync import BroadcastGroup

        store, self.store = self.store, None
        self.group = BroadcastGroup("", 0, 0, world_size, self.cfg.broadcast_backend, timeout_s, store=store,
                                    key_prefix=self.store_prefix)
        self.buckets = buckets
        return True

    @ray.method(concurrency_group="weights")
    def broadcast_weights(self, version: int, snapshot: int | None = None) -> dict:
        """Send weights ``version``: the live ones, or with ``snapshot`` (``snapshot_weights``'s
        result, which Ray resolves before this call runs) the copy taken then."""
        t0 = time.monotonic()
        if snapshot is None:
            tensors = self._trainable_views()
        else:
            held, tensors = self.outgoing
            if held != version:
                raise RuntimeError(f"learner rank 0 holds a copy of version {held}, asked to send {version}")
        sent = self.group.send(tensors, self.buckets, version)
        elapsed = time.monotonic() - t0
        return {"bytes": sent, "seconds": elapsed, "gb_per_s": sent / elapsed / 1e9 if elapsed > 0 else 0.0}

    @ray.method(concurrency_group="weights")
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
