"""The rollout actor: sample G completions per prompt, segment, publish one record each.

Holds a ``PolicyEngine`` (vLLM + the [SEG] pass) and the training split. Prompts arrive as
(dataset index, group id) pairs; every completion becomes a ``RolloutRecord`` tagged with the
policy version it was sampled with and published to the rollout stream.

New weights arrive over the broadcast group in one of two ways:

    synchronous (learner.max_policy_lag = 0)   ``receive_weights``: received and applied at once,
        between steps. ``rollout`` refuses to sample unless the engine holds exactly the version
        the driver asks for.
    staged (max_policy_lag >= 1)   ``stage_weights`` runs in the actor's "weights" thread while
        ``rollout`` samples: the transfer is received and kept aside. The next ``rollout`` call
        applies the newest staged version before it samples, so a version is only ever applied
        between generate calls, never half-way; a call that needs a newer version than the
        actor holds (``min_version``) waits for it, for a bounded time.

A transfer is applied only when it completed with the expected version; while it is applied the
engine's version reads ``TORN``, so no record is ever sampled from half-updated weights.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
import ray

from aurora_rl.config.schema import DataConfig, RolloutConfig
from aurora_rl.services.library_logs import capture_output

TORN = -1  # engine version while new weights are being applied (or after that failed)


class WeightsVersionError(RuntimeError):
    """The actor does not hold the policy version it was asked to sample with."""


class Superseded(RuntimeError):
    """A call made before the learner was rolled back to a checkpoint (its groups are abandoned)."""


@ray.remote(num_cpus=1, max_restarts=0, concurrency_groups={"weights": 1})
class RolloutActor:
    def __init__(self, actor_id: str, checkpoint: str, work_dir: str, data: DataConfig, rollout: RolloutConfig,
                 redis_url: str, rollout_stream: str, mask_threshold: float = 0.5, seed: int = 0,
                 log_file: str | None = None, gpus: float = 0.0):
        capture_output(log_file)  # vLLM's and torch's output: to the run folder, not the console
        from actors.policy_engine import PolicyEngine
        from aurora_rl.data.refavs_dataset import RefAVSDataset
        from aurora_rl.record_stream import RecordStream
        from aurora_rl.services.devices import role_device
        from aurora_rl.services.redis_client import connect_redis

        self.actor_id = actor_id
        self.sampling = rollout.sampling
        device = role_device(f"rollout actor {actor_id}", gpus)  # before anything loads
        self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=rollout.kv_cache_gib,
                                   cpu_threads=rollout.cpu_threads, seed=seed,
                                   answer_tokens=rollout.sampling.max_new_tokens, device=device)
        self.dataset = RefAVSDataset.from_config(data, data.train_split, **self.engine.shape.reader_options())
        self.stream = RecordStream(connect_redis(redis_url, name=f"rollout actor {actor_id}"), rollout_stream,
                                   "scorers")
        self.mask_threshold = mask_threshold
        self.group = None
        self.buckets = None
        self.published = 0
        self.weights_ready = threading.Condition()  # the "weights" thread stages, ``rollout`` applies
        self.staged: Optional[tuple[int, dict]] = None  # (version, trainable tensors) received, not applied
        self.epoch = 0  # raised by ``rollback``: calls made before it are superseded
        self.rolled_back = False  # the weights held are past the learner's: wait for staged ones

    def ready(self) -> dict:
        """The actor's id, process and policy version (weights received and staged are applied first)."""
        self._apply_newest()
        return {"actor": self.actor_id, "version": self.engine.version, "pid": _pid()}

    def memory(self) -> dict:
        """The device's memory and this actor's share (``aurora-rl preflight``)."""
        return self.engine.memory()

    def rollout(self, prompts: list[tuple[int, str]], seed: int, version: int | None = None,
                max_prompts: int | None = None, min_version: int | None = None, wait_s: float = 120.0,
                epoch: int = 0) -> dict:
        """Sample and publish; returns counts, phase times and the prompts that could not be loaded.

        Args:
            prompts: (dataset index, group id) pairs.
            seed: the sampling seed (every chunk uses it, so chunking does not change the samples).
            version: the policy version to sample with; any other raises ``WeightsVersionError``.
            max_prompts: the most prompts in one generate + [SEG] pass; more are done in chunks.
            min_version: staged weights: apply the newest staged version first, waiting up to
                ``wait_s`` for one at least this new (then ``WeightsVersionError``).
            epoch: the driver's rollback count when it made the call (``rollback``).
        """
        from aurora_rl.data.errors import DataError
        from aurora_rl.records import RolloutRecord

        waited_s = apply_s = 0.0
        if min_version is not None:
            waited_s, apply_s = self._apply_staged(min_version, wait_s, epoch)
        held = self.engine.version
        if held == TORN or (version is not None and held != version):
            raise WeightsVersionError(f"{self.actor_id} holds policy version {held}, asked to sample with {version}")
        t0 = time.monotonic()
        loaded, clips, failed = [], [], []
        for index, group_id in prompts:
            try:
                clips.append(self.dataset[index])
                loaded.append((index, group_id))
            except DataError as e:  # the file is named in the message; the driver counts and logs it
                failed.append((int(index), group_id, str(e)))
        t_load = time.monotonic() - t0
        sample_before, seg_before, tokens_before = (self.engine.timings.sample_s, self.engine.timings.seg_s,
                                                    self.engine.timings.tokens)
        step = max_prompts or max(1, len(clips))
        groups = []
        for start in range(0, len(clips), step):
            groups += complete_splitting(lambda part: self.engine.complete(part, self.sampling, seed=seed),
                                         clips[start:start + step], self.actor_id)
        t1 = time.monotonic()
        g = self.sampling.group_size
        for (index, group_id), clip, completions in zip(loaded, clips, groups):
            prompt_ids = self.engine.prompt_ids(clip.expression)
            for k, c in enumerate(completions):
                record = RolloutRecord(
                    uid=clip.uid, group_id=group_id, sample_index=k, group_size=g,
                    policy_version=self.engine.version, prompt_token_ids=np.array(prompt_ids),
                    completion_token_ids=np.array(c.token_ids), sampling_logprobs=np.array(c.logprobs),
                    completion_text=c.text,
                    meta={"actor": self.actor_id, "dataset_index": int(index), "row": clip.row},
                ).with_masks(c.mask_probs.astype(np.float32) > self.mask_threshold if c.has_seg else None)
                self.stream.publish(record)
                self.published += 1
        return {
            "records": len(loaded) * g,
            "failed": failed,
            "chunks": -(-len(clips) // step),
            "tokens": self.engine.timings.tokens - tokens_before,
            "load_s": t_load,
            "sample_s": self.engine.timings.sample_s - sample_before,
            "seg_s": self.engine.timings.seg_s - seg_before,
            "publish_s": time.monotonic() - t1,
            "version": self.engine.version,
            "weights_wait_s": waited_s,
            "apply_s": apply_s,
        }

    def _apply_staged(self, min_version: int, wait_s: float, epoch: int) -> tuple[float, float]:
        """Apply the newest staged weights, first waiting (at most ``wait_s``) until the actor holds
        or has staged ``min_version`` or newer; (seconds waited, seconds applying)."""
        t0 = time.monotonic()
        with self.weights_ready:
            while True:
                if epoch < self.epoch:
                    raise Superseded(f"{self.actor_id}: a call made before the learner was rolled back to a checkpoint")
                newest = self.staged[0] if self.staged is not None else None
                if newest is None and not self.rolled_back:
                    newest = self.engine.version
                if newest is not None and newest >= min_version:
                    break
                left = t0 + wait_s - time.monotonic()
                if left <= 0:
                    raise WeightsVersionError(
                        f"{self.actor_id} waited {wait_s:g} s for policy version {min_version} and holds "
                        f"{self.engine.version}: no broadcast of it from learner rank 0 arrived")
                self.weights_ready.wait(left)
        waited = time.monotonic() - t0
        return waited, self._apply_newest()

    def _apply_newest(self) -> float:
        """Apply the newest staged weights, if any (between generate calls); seconds applying."""
        with self.weights_ready:
            staged, self.staged = self.staged, None
            self.rolled_back = self.rolled_back and staged is None
        return 0.0 if staged is None else self._apply(*staged)

    def _apply(self, version: int, state: dict) -> float:
        """Weights ``version`` into the HF modules and vLLM; seconds applying."""
        t0 = time.monotonic()
        self.engine.version = TORN  # load_trainable sets the new version once HF modules and vLLM both hold it
        self.engine.load_trainable(state, version)
        return time.monotonic() - t0

    def first_token_logprobs(self, indices: list[int], top: int = 20) -> list[dict[int, float]]:
        """vLLM's log-probabilities of the first answer token (checks that broadcast weights took;
        weights received and staged are applied first)."""
        from vllm import SamplingParams

        from aurora_rl.data.clip_sample import collate_clips

        self._apply_newest()
        clips = [self.dataset[i] for i in indices]
        batch = collate_clips(clips)
        prompts = [self.engine.prompt_ids(c.expression) for c in clips]
        embeds = self.engine.policy.prompt_embeds(prompts, batch["frames"], batch["fbank"], batch["fbank_lengths"])
        outs = self.engine.llm.generate([{"prompt_embeds": e} for e in embeds],
                                        SamplingParams(temperature=0.0, max_tokens=1, logprobs=top), use_tqdm=False)
        return [{int(t): float(lp.logprob) for t, lp in o.outputs[0].logprobs[0].items()} for o in outs]

    @ray.method(concurrency_group="weights")
    def join_broadcast(self, host: str, port: int, rank: int, world_size: int, buckets: list, timeout_s: float,
                       backend: str, key_prefix: str) -> bool:
        """Join the weight-broadcast group with the backend the learner uses (GRPOConfig.broadcast_backend)."""
        from aurora_rl.weight_sync import BroadcastGroup

        self.group = BroadcastGroup(host, port, rank, world_size, backend, timeout_s, key_prefix=key_prefix)
        self.buckets = buckets
        return True

    def receive_weights(self, version: int) -> dict:
        """Take part in one broadcast and apply it; the old weights stay if anything fails."""
        t0 = time.monotonic()
        state = self.group.receive(self.buckets, version)  # raises on a torn transfer: nothing applied
        transfer_s = time.monotonic() - t0
        return {"version": version, "transfer_s": transfer_s, "apply_s": self._apply(version, state)}

    @ray.method(concurrency_group="weights")
    def stage_weights(self, version: int) -> dict:
        """Take part in one broadcast while ``rollout`` may be sampling; the next ``rollout`` call
        applies it. A torn transfer raises and stages nothing."""
        t0 = time.monotonic()
        state = self.group.receive(self.buckets, version)
        with self.weights_ready:
            self.staged = (version, state)
            self.weights_ready.notify_all()
        return {"version": version, "transfer_s": time.monotonic() - t0, "apply_s": 0.0}

    @ray.method(concurrency_group="weights")
    def rollback(self, epoch: int) -> None:
        """The learner went back to a checkpoint: calls made before (``epoch`` lower) give up any
        wait for weights that will not come, and nothing staged is applied."""
        with self.weights_ready:
            self.epoch = max(self.epoch, epoch)
            self.staged, self.rolled_back = None, True
            self.weights_ready.notify_all()

    @ray.method(concurrency_group="weights")
    def leave_broadcast(self) -> None:
        if self.group is not None:
            self.group.close()
        self.group = None


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: host (MemoryError, oneDNN/c10 messages) or GPU (torch.OutOfMemoryError)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                                or "failed to allocate" in text)


def complete_splitting(complete, clips: list, who: str = "rollout") -> list:
    """``complete(clips)`` -> one result per clip; a batch that runs out of memory is done in two
    halves (recursively), so a batch too large for the device is slower, not fatal. One clip
    that still does not fit re-raises the error."""
    try:
        return complete(clips)
    except (MemoryError, RuntimeError) as e:
        if len(clips) < 2 or not is_out_of_memory(e):
            raise
        import gc

        gc.collect()
        half = len(clips) // 2
        print(f"[{who}] a batch of {len(clips)} prompts ran out of memory; splitting it into {half} + "
              f"{len(clips) - half}", flush=True)
        return complete_splitting(complete, clips[:half], who) + complete_splitting(complete, clips[half:], who)


def _pid() -> int:
    import os

    return os.getpid()
