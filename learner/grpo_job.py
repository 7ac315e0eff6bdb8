"""The stage-3 driver: rollout actors, reward workers and the learner group, step by step.

    one step = dispatch P prompts over the rollout actors (each samples G completions, segments
               and publishes records) -> reward workers score them (Redis stream "scorers")
            -> the driver collects the step's P x G scored records (stream "learner"), computes
               group advantages -> the K learner ranks take one DeepSpeed step
            -> version += 1 -> learner rank 0 broadcasts the new weights to every rollout actor

Exactly once: a record is learned from at most once (record ids are remembered) and every
expected record is accounted for — learned, or dropped and counted (stale version, late
duplicate, incomplete group). Rollout actors can be added or removed between steps; the
broadcast group is rebuilt and a new actor gets the current weights before it samples.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Optional

import numpy as np

from aurora_rl.config.schema import GRPOConfig
from learner.grpo_collect import StepCollector
from learner.placement import JobPlacement, PlacementTimeout, wanted_rollout_actors
from learner.train_log import TrainLogger, say


class GRPOJob:
    def __init__(self, cfg: GRPOConfig, redis_url: str, resume: bool = False, log=say):
        self.cfg = cfg
        self.redis_url = redis_url
        self.resume = resume
        self.log = log
        self.run_dir = (Path(cfg.run.output_dir) / cfg.run.name).resolve()
        self.queue = dataclasses.replace(cfg.queue, rollout_stream=f"{cfg.queue.rollout_stream}:{cfg.run.name}",
                                         scored_stream=f"{cfg.queue.scored_stream}:{cfg.run.name}")
        self.data = dataclasses.replace(cfg.data, root=str(Path(cfg.data.root).resolve()))
        self.checkpoint = str(Path(cfg.model.path).resolve())
        self.learners: list = []
        self.actors: dict[str, object] = {}
        self.reward_workers: list = []
        self.reward_runs: list = []
        self.buckets = None
        self.version = 0
        self.step = 0
        self.next_actor = 0
        self.counters = {"learned": 0}
        self.placement: Optional[JobPlacement] = None
        self.rollout_cap: Optional[int] = None  # the last count asked for with `aurora-rl scale`
        self.started = time.time()
        # Record ids must not repeat across attempts of a step (the reward workers deduplicate by
        # id), so a resumed job tags its groups with a fresh attempt id.
        self.attempt = secrets.token_hex(3)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        import ray

        from learner.grpo_learner import LearnerRank
        from learner.weight_sync import plan_buckets
        from rewards.reward_worker import RewardWorker

        cfg = self.cfg
        if cfg.learner.prompts_per_step * cfg.rollout.sampling.group_size < cfg.learner.num_ranks:
            raise ValueError("prompts_per_step x group_size must be at least learner.num_ranks")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_dict = dataclasses.asdict(cfg)
        cfg_dict["data"] = dataclasses.asdict(self.data)
        k = cfg.learner.num_ranks
        self.placement = JobPlacement(cfg.placement, f"aurora:{cfg.run.name}:{self.attempt}")
        ranks = self.placement.reserve("learner", "learner", k, cfg.placement.learner_strategy)
        self.learners = [LearnerRank.options(**ranks[r]).remote(r, k, cfg_dict, self.checkpoint, cfg.learner.use_gpu)
                         for r in range(k)]
        host, port = ray.get(self.learners[0].free_address.remote())
        ray.get([lr.setup.remote(host, port) for lr in self.learners])
        self.buckets = plan_buckets(ray.get(self.learners[0].weight_specs.remote()),
                                    int(cfg.broadcast.bucket_mb * 1024 * 1024))
        self._reset_streams()
        queue_dict = dataclasses.asdict(self.queue)
        reward_dict = dataclasses.asdict(cfg.reward)
        scorers = self.placement.reserve("reward", "reward", cfg.reward.num_workers, cfg.placement.reward_strategy)
        self.reward_workers = [
            RewardWorker.options(**scorers[i]).remote(self.redis_url, queue_dict, reward_dict, self.data.root,
                                                      self.data.mask_size, f"scorer-{i}",
                                                      num_frames=self.data.num_frames)
            for i in range(cfg.reward.num_workers)
        ]
        self.reward_runs = [w.run.remote() for w in self.reward_workers]
        if self.resume:
            self._restore()
        for _ in range(cfg.rollout.num_actors):
            self._create_actor()
        self._rebuild_broadcast()
        self._write_job_file()
        self.log(f"[grpo] {k} learner ranks, {len(self.actors)} rollout actors, {len(self.reward_workers)} reward "
                 f"workers ({'typed' if self.placement.typed else 'CPU'} placement); {len(self.buckets)} weight "
                 f"buckets; run folder {self.run_dir}")

    def _write_job_file(self) -> None:
        """``<run>/job.json``: how ``aurora-rl status`` / ``scale`` reach the job, and where its workers run."""
        workers = {"rollout": {a: self.placement.nodes(a)[0] for a in self.actors},
                   "reward": self.placement.nodes("reward"), "learner": self.placement.nodes("learner")}
        (self.run_dir / "job.json").write_text(json.dumps({
            "redis_url": self.redis_url, "rollout_stream": self.queue.rollout_stream,
            "scored_stream": self.queue.scored_stream, "scale_key": self.scale_key, "started": self.started,
            "placement": "typed" if self.placement.typed else "cpu", "workers": workers}))

    @property
    def scale_key(self) -> str:
        """Redis key ``aurora-rl scale`` writes the wanted rollout actor count to."""
        return f"{self.queue.rollout_stream}:rollout_target"

    def _apply_scale_request(self) -> None:
        """Before a step: a count asked for with ``aurora-rl scale``, else the autoscaling rule.
        The user's count also caps the autoscaler from then on: a pool scaled down stays down."""
        wanted = self.collector.stream.client.getdel(self.scale_key)
        if wanted is not None:
            self.rollout_cap = int(wanted)
            self.scale_rollout(int(wanted))
        else:
            self._autoscale_rollout()

    def _autoscale_rollout(self) -> None:
        """Steps are synchronous, so the prompt queue is the step's prompts, shared by the actors.
        Past the threshold: a standing autoscaler request for the wanted rollout bundles, and new
        actors for the bundles that fit now (nodes the autoscaler adds are used at later steps)."""
        have = len(self.actors)
        rule = self.cfg.placement.autoscale
        if self.rollout_cap is not None:
            rule = dataclasses.replace(rule, max_actors=min(rule.max_actors, self.rollout_cap))
        wanted = wanted_rollout_actors(self.cfg.learner.prompts_per_step, have, rule)
        if wanted > have:
            self.placement.request_rollout(wanted)
            room = self.placement.rollout_room()
            if room:
                self.scale_rollout(have + min(room, wanted - have))

    def _reset_streams(self) -> None:
        from aurora_rl.services.redis_client import connect_redis
        from rewards.stream_scorer import seen_key

        client = connect_redis(self.redis_url)
        # Steps are synchronous: nothing in the streams outlives the step that made it, and a
        # resumed job re-samples the steps after its checkpoint.
        client.delete(self.queue.rollout_stream, self.queue.scored_stream, seen_key(self.queue.scored_stream))
        self.collector = StepCollector(client, self.queue, self.cfg.learner.max_policy_lag)

    def _create_actor(self) -> str:
        import ray

        from actors.rollout_actor import RolloutActor

        actor_id = f"rollout-{self.next_actor}"
        (options,) = self.placement.reserve(actor_id, "rollout", 1)
        self.next_actor += 1
        r = self.cfg.rollout
        actor = RolloutActor.options(**options).remote(
            actor_id, self.checkpoint, str(self.run_dir / "actors" / actor_id), dataclasses.asdict(self.data),
            dataclasses.asdict(r.sampling), self.redis_url, self.queue.rollout_stream, r.kv_cache_gib, r.cpu_threads,
            self.cfg.reward.mask_threshold, self.cfg.run.seed + 1000 * self.next_actor)
        try:
            ray.get(actor.ready.remote())
        except Exception:
            self.placement.release(actor_id)
            raise
        self.actors[actor_id] = actor
        return actor_id

    def _rebuild_broadcast(self) -> None:
        """A new group over learner rank 0 + the current actors, then the current weights to all."""
        import ray

        members = list(self.actors.values())
        ray.get([self.learners[0].leave_broadcast.remote()] + [a.leave_broadcast.remote() for a in members])
        host, port = ray.get(self.learners[0].free_address.remote())
        world = len(members) + 1
        timeout = self.cfg.broadcast.timeout_s
        ray.get([self.learners[0].join_broadcast.remote(host, port, world, self.buckets, timeout)]
                + [a.join_broadcast.remote(host, port, i + 1, world, self.buckets, timeout) for i, a in enumerate(members)])
        self._broadcast()

    def _broadcast(self) -> dict:
        import ray

        refs = [self.learners[0].broadcast_weights.remote(self.version)]
        refs += [a.receive_weights.remote(self.version) for a in self.actors.values()]
        sent, *received = ray.get(refs)
        return {"broadcast_gb_per_s": sent["gb_per_s"], "broadcast_s": sent["seconds"],
                "apply_s": max((r["apply_s"] for r in received), default=0.0)}

    def scale_rollout(self, count: int) -> None:
        """Add or remove rollout actors (between steps): nothing in flight is lost."""
        import ray

        if count < 1:
            raise ValueError("at least one rollout actor is needed")
        changed = False
        if count > len(self.actors):
            self.placement.request_rollout(count)  # on an autoscaling cluster: launch rollout nodes for them
        while len(self.actors) < count:
            try:
                self._create_actor()
            except PlacementTimeout as e:
                self.log(f"[grpo] scaling to {count} rollout actors stopped at {len(self.actors)}: {e}")
                break
            changed = True
        while len(self.actors) > count:
            actor_id = sorted(self.actors, key=lambda a: int(a.split("-")[1]))[-1]
            actor = self.actors.pop(actor_id)
            ray.get(actor.leave_broadcast.remote())
            ray.kill(actor)
            self.placement.release(actor_id)  # frees its node for the autoscaler to retire
            changed = True
        if changed:
            self._rebuild_broadcast()
            self._write_job_file()
            self.log(f"[grpo] rollout actors now {sorted(self.actors)} at version {self.version}")

    def stop(self) -> None:
        import ray

        try:
            for w in self.reward_workers:
                w.stop.remote()
            if self.reward_runs:
                ray.get(self.reward_runs, timeout=60)
            for actor in self.actors.values():
                ray.kill(actor)
            self.actors = {}
            if self.learners:
                ray.get([lr.shutdown.remote() for lr in self.learners])
                for lr in self.learners:
                    ray.kill(lr)
            self.learners = []
        finally:
            # Reservations outlive their actors: a stop that failed half-way (a rank killed for
            # memory, say) must still give the resources back.
            if self.placement is not None:
                self.placement.release_all()

    # ------------------------------------------------------------------ the loop
    def prompts_for_step(self, step: int, n_rows: int) -> list[tuple[int, str]]:
        """P (dataset index, group id) pairs; epochs are fresh permutations of the split."""
        p = self.cfg.learner.prompts_per_step
        out = []
        for j in range(step * p, (step + 1) * p):
            epoch, pos = divmod(j, n_rows)
            order = np.random.default_rng([self.cfg.run.seed, epoch]).permutation(n_rows)
            out.append((int(order[pos]), f"{self.attempt}/s{step}/p{j - step * p}"))
        return out

    def run(self, steps: Optional[int] = None, scale_plan: Optional[dict[int, int]] = None) -> Path:
        """Train until ``learner.steps`` (or ``steps`` more); ``scale_plan`` maps step -> actor count."""
        import ray
        import torch

        from aurora_rl.data import refavs_layout as layout
        from aurora_rl.grpo.advantages import group_advantages
        from aurora_rl.records import encode

        cfg = self.cfg
        n_rows = sum(1 for r in layout.read_metadata(Path(self.data.root)) if r.split == self.data.train_split)
        n_rows = min(n_rows, self.data.max_samples or n_rows)
        end = cfg.learner.steps if steps is None else self.step + steps
        logger = TrainLogger(self.run_dir, "grpo", end, 0, start_step=self.step)
        g = cfg.rollout.sampling.group_size
        while self.step < end:
            if scale_plan and self.step in scale_plan:
                self.scale_rollout(scale_plan[self.step])
            self._apply_scale_request()
            t_step = time.monotonic()
            prompts = self.prompts_for_step(self.step, n_rows)
            actors = list(self.actors.values())
            shards = [prompts[i::len(actors)] for i in range(len(actors))]
            seed = cfg.run.seed * 1_000_003 + self.step
            t0 = time.monotonic()
            rollouts = ray.get([a.rollout.remote(s, seed + i) for i, (a, s) in enumerate(zip(actors, shards)) if s])
            t_sample = time.monotonic() - t0
            t0 = time.monotonic()
            groups = self.collector.collect([gid for _, gid in prompts], g, self.version, cfg.queue.collect_timeout_s)
            t_collect = time.monotonic() - t0
            records = [r for group in groups for r in group]
            rewards = np.array([[r.reward for r in group] for group in groups], dtype=np.float32)
            adv = group_advantages(torch.from_numpy(rewards), cfg.learner.normalize_std, cfg.learner.adv_eps).flatten()
            k = len(self.learners)
            t0 = time.monotonic()
            stats = ray.get([
                lr.train_step.remote([encode(r) for r in records[i::k]], adv[i::k].tolist(), self.step)
                for i, lr in enumerate(self.learners)
            ])
            t_learn = time.monotonic() - t0
            self.collector.ack_step()
            self.counters["learned"] += len(records)
            self.version += 1
            self.step += 1
            t0 = time.monotonic()
            sync = self._broadcast()
            t_sync = time.monotonic() - t0
            metrics = self._step_metrics(records, rewards, stats, rollouts, sync,
                                         {"sample": t_sample, "reward_wait": t_collect, "learn": t_learn,
                                          "broadcast": t_sync, "step": time.monotonic() - t_step})
            logger.log(self.step, metrics, samples=len(records))
            if self.step % cfg.learner.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
        logger.close()
        return self.export_final()

    def _step_metrics(self, records, rewards, stats, rollouts, sync, phases) -> dict:
        kinds = sorted({k for r in records for k in (r.rewards or {}) if k != "total"})
        out = {"reward": float(rewards.mean()), "group_reward_std": float(rewards.std(axis=1).mean())}
        for kind in kinds:
            out[f"reward_{kind}"] = float(np.mean([r.rewards[kind] for r in records]))
        for key in ("loss", "policy_loss", "kl", "clip_fraction", "mask_bce", "mask_dice", "grad_norm"):
            out[key] = float(np.mean([s[key] for s in stats]))
        tokens = sum(r["tokens"] for r in rollouts)
        sample_s = max(r["sample_s"] for r in rollouts)
        out["tokens_per_s"] = tokens / sample_s if sample_s > 0 else 0.0
        out["seg_s"] = max(r["seg_s"] for r in rollouts)
        out["policy_lag"] = float(self.version - 1 - min(r.policy_version for r in records))
        out["rollout_queue"] = float(self.collector.rollout_depth())
        out["scored_queue"] = float(self.collector.scored_depth())
        out["version"] = float(self.version)
        out["rollout_actors"] = float(len(self.actors))
        out["broadcast_gb_per_s"] = sync["broadcast_gb_per_s"]
        out.update({f"time_{k}_s": v for k, v in phases.items()})
        out.update({k: float(v) for k, v in self.collector.counters.items()})
        out["learned"] = float(self.counters["learned"])
        return out

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        import ray

        folder = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "version": self.version, "counters": self.counters}
        ray.get([lr.save.remote(str(folder), state) for lr in self.learners])
        (folder / "job_state.json").write_text(json.dumps(state))
        (self.run_dir / "checkpoints" / "latest").write_text(folder.name)
        return folder

    def _restore(self) -> None:
        import ray

        latest = self.run_dir / "checkpoints" / "latest"
        if not latest.exists():
            raise FileNotFoundError(f"{self.run_dir}: nothing to resume (no checkpoints/latest)")
        folder = self.run_dir / "checkpoints" / latest.read_text().strip()
        ray.get([lr.load.remote(str(folder)) for lr in self.learners])
        state = json.loads((folder / "job_state.json").read_text())
        self.step, self.version, self.counters = state["step"], state["version"], state["counters"]
        self.log(f"[grpo] resumed at step {self.step}, policy version {self.version} from {folder}")

    def export_final(self) -> Path:
        import shutil

        folder = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        if not (folder / "policy").exists():
            folder = self.save_checkpoint()
        final = self.run_dir / "checkpoint"
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(folder / "policy", final)
        self.log(f"[grpo] final checkpoint: {final}")
        return final


def run_grpo(cfg: GRPOConfig, redis_url: str, resume: bool = False) -> Path:
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    if (run_dir / "checkpoints").exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another run.name")
    job = GRPOJob(cfg, redis_url, resume)
    try:
        job.start()
        return job.run()
    finally:
        job.stop()
