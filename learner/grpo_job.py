"""The stage-3 driver: the step loop over a rollout pool, a reward pool and a learner group.

    one step = dispatch P prompts over the rollout actors (each samples G completions, segments
               and publishes records) -> reward workers score them (Redis stream "scorers")
            -> the driver collects the step's P x G scored records (stream "learner"), computes
               group advantages -> the K learner ranks take one DeepSpeed step
            -> version += 1 -> learner rank 0 broadcasts the new weights to every rollout actor

Synchronous (``learner.max_policy_lag = 0``): each step waits for the one before, and the actors
sample with exactly the learner's version. Asynchronous (k >= 1): the sampling of the next k steps
is started before the learner takes this one, so actors sample while the learner trains; the
broadcast of a new version is sent from a copy while the next step trains, and each actor applies
it before its next call (waiting for it only when the call would otherwise be more than k versions
behind). A group more than k versions older than the learner is dropped and counted.

Exactly once: a record is learned from at most once (record ids are remembered) and every
expected record is accounted for — learned, or dropped and counted (stale version, late
duplicate, incomplete group). Rollout actors can be added or removed between steps; the
broadcast group is rebuilt and a new actor gets the current weights before it samples.

The parts (learner/rollout_pool.py, reward_pool.py, learner_group.py) survive their own
workers' deaths; the loop survives a learner rank's: it restarts the group from the last
checkpoint and redoes the steps after it (docs/RELIABILITY.md).
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
from aurora_rl.model.checkpoint import check_data_matches
from aurora_rl.records import RecordLimits
from aurora_rl.services.library_logs import LOG_DIR, logs_line
from aurora_rl.services.redis_acl import RoleUsers
from learner import checkpoints
from learner.grpo_collect import StepCollector
from learner.learner_group import LearnerGroup, LearnerLost
from learner.placement import JobPlacement
from learner.reward_pool import RewardPool
from learner.rollout_pool import RolloutPool
from learner.train_log import TrainLogger, rows_by_step, say

FAULT_COUNTERS = ("rollout_actors_replaced", "reward_workers_replaced", "groups_resampled", "groups_given_up",
                  "broadcast_retries", "learner_restarts", "load_failures", "nan_steps_skipped", "steps_skipped")


class GRPOJob:
    def __init__(self, cfg: GRPOConfig, redis_url: str, resume: bool = False, log=say):
        self.redis_url = redis_url
        self.resume = resume
        self.log = log
        self.run_dir = (Path(cfg.run.output_dir) / cfg.run.name).resolve()
        self.queue = dataclasses.replace(cfg.queue, rollout_stream=f"{cfg.queue.rollout_stream}:{cfg.run.name}",
                                         scored_stream=f"{cfg.queue.scored_stream}:{cfg.run.name}")
        # every worker reads the same absolute paths, wherever Ray starts it
        self.data = dataclasses.replace(cfg.data, root=str(Path(cfg.data.root).resolve()))
        mix = cfg.mix
        if mix.every_object_data:
            mix = dataclasses.replace(mix, every_object_data=str(Path(mix.every_object_data).resolve()))
        self.cfg = dataclasses.replace(cfg, data=self.data, mix=mix)
        self.checkpoint = str(Path(cfg.model.path).resolve())
        check_data_matches(self.checkpoint, self.data, f"grpo run {cfg.run.name}")
        # what a record of this run can hold (mask shape, sampling budget): reward workers and the
        # collector refuse anything beyond it unread
        self.limits = RecordLimits.for_run(self.queue.max_record_bytes, cfg.rollout.sampling, self.data)
        self.version = 0
        self.step = 0
        self.counters = {"learned": 0}
        self.faults = dict.fromkeys(FAULT_COUNTERS, 0)  # what was survived (docs/RELIABILITY.md)
        self.learned_groups: dict[int, list[str]] = {}  # step -> the groups learned from at that step
        # sampling started ahead of the learner (asynchronous job): step -> its calls; the next step
        # to start; the dataset rows of steps a checkpoint had in flight (restored, not yet started)
        self.sampling: dict = {}
        self.next_sample = 0
        self.in_flight_rows: dict[int, list[int]] = {}
        self.broadcasting = None  # the broadcast started after the last step, not yet settled
        self.drained_sync: Optional[dict] = None  # the metrics of one settled before its step's end
        self.end = 0
        self.placement: Optional[JobPlacement] = None
        self.learners: Optional[LearnerGroup] = None
        self.rollout: Optional[RolloutPool] = None
        self.rewards: Optional[RewardPool] = None
        self.users: Optional[RoleUsers] = None  # one Redis user per role (aurora_rl/services/redis_acl.py)
        self.redis = None  # the owner's client (streams reset, scale requests)
        self.started = time.time()
        # Record ids must not repeat across attempts of a step (the reward workers deduplicate by
        # id), so a resumed job tags its groups with a fresh attempt id.
        self.attempt = secrets.token_hex(3)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        from aurora_rl.weight_sync import plan_buckets

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.placement = JobPlacement(cfg.placement, f"aurora:{cfg.run.name}:{self.attempt}")
        self.learners = LearnerGroup(cfg, self.checkpoint, self.placement, self.run_dir)
        # the driver keeps the owner's URL; each role gets a Redis user with only what it needs
        self.users = RoleUsers(self.redis_url, cfg.run.name, self.queue.rollout_stream, self.queue.scored_stream)
        urls = self.users.create()
        self.users.keep()
        self.rollout = RolloutPool(cfg, self.checkpoint, self.data, urls["rollout"], self.queue.rollout_stream,
                                   self.run_dir, self.placement, self.learners, self.faults, self.log)
        self.rollout.before_change = self._drain  # actors come and go with nothing running on them
        self.rewards = RewardPool(cfg, urls["reward"], self.queue, self.data, self.limits, self.placement, self.run_dir,
                                  self.faults, self.log)
        # Every worker loads its libraries and model in its own process: all are launched before
        # any is awaited, so the job starts in about the time of its slowest worker.
        self.learners.launch()
        self._reset_streams()
        self.rewards.start()
        launched, timeout = self.rollout.launch(cfg.rollout.num_actors)
        if timeout is not None:
            raise timeout
        self.learners.join()
        self.rollout.buckets = plan_buckets(self.learners.weight_specs(), int(cfg.broadcast.bucket_mb * 1024 * 1024))
        if self.resume:
            self._restore()
        self.rollout.await_ready(launched)
        self.rollout.broadcast(self.version, rebuild=True)
        self._write_job_file()
        self.log(f"[grpo] {cfg.learner.num_ranks} learner ranks, {len(self.rollout.actors)} rollout actors, "
                 f"{cfg.reward.num_workers} reward workers ({'typed' if self.placement.typed else 'CPU'} placement); "
                 f"{len(self.rollout.buckets)} weight buckets; run folder {self.run_dir}")

    def _write_job_file(self) -> None:
        """``<run>/job.json``: how ``aurora-rl status`` / ``scale`` reach the job (its Redis password
        in a file of the user's own, not in the shared run folder), and where its workers run."""
        from aurora_rl.services.job_file import write_job_file

        workers = {"rollout": self.rollout.nodes(), "reward": self.placement.nodes("reward"),
                   "learner": self.placement.nodes("learner")}
        write_job_file(self.run_dir, self.redis_url, rollout_stream=self.queue.rollout_stream,
                       scored_stream=self.queue.scored_stream, scale_key=self.scale_key, started=self.started,
                       placement="typed" if self.placement.typed else "cpu", workers=workers)

    @property
    def scale_key(self) -> str:
        """Redis key ``aurora-rl scale`` writes the wanted rollout actor count to."""
        return f"{self.queue.rollout_stream}:rollout_target"

    def _apply_scale_request(self) -> None:
        """Before a step: a count asked for with ``aurora-rl scale``, else the autoscaling rule
        (steps are synchronous, so the prompt queue is the step's prompts, shared by the actors).
        The user's count also caps the autoscaler from then on: a pool scaled down stays down."""
        wanted = self.redis.getdel(self.scale_key)
        if wanted is not None:
            self.rollout.cap = int(wanted)
            self.scale_rollout(int(wanted))
        elif self.rollout.autoscale(self.cfg.learner.prompts_per_step, self.version):
            self._write_job_file()

    def scale_rollout(self, count: int) -> None:
        """Add or remove rollout actors (between steps): nothing in flight is lost."""
        if self.rollout.scale(count, self.version):
            self._write_job_file()

    def _reset_streams(self) -> None:
        """As the owner: empty the run's streams and make their consumer groups; the collector then
        reads the scored stream as the learner's Redis user."""
        from aurora_rl.record_stream import RecordStream
        from aurora_rl.services.redis_client import connect_redis
        from rewards.stream_scorer import GROUP, seen_key

        self.redis = connect_redis(self.redis_url, name="grpo driver")
        # Steps are synchronous: nothing in the streams outlives the step that made it, and a
        # resumed job re-samples the steps after its checkpoint.
        self.redis.delete(self.queue.rollout_stream, self.queue.scored_stream, seen_key(self.queue.scored_stream))
        RecordStream(self.redis, self.queue.rollout_stream, GROUP).ensure_group()
        learner = connect_redis(self.users.urls()["learner"], name="grpo driver (learner)")
        self.collector = StepCollector(learner, self.queue, self.cfg.learner.max_policy_lag, limits=self.limits)

    def stop(self) -> None:
        """Stop every worker. One already dead (killed for memory, say) is logged and the rest still
        stop, so an error that ended the run is not hidden behind one from the clean-up."""
        try:
            if self.rewards is not None and self.rewards.workers:
                self._log_unclean("reward workers", self.rewards.stop())
            if self.rollout is not None:
                self.rollout.kill()
            if self.learners is not None and self.learners.ranks:
                self._log_unclean("learner shutdown", self._settle(self.learners.shutdown_calls(), 120))
                self.learners.kill()
        finally:
            # Reservations outlive their actors: a stop that failed half-way (a rank killed for
            # memory, say) must still give the resources back.
            if self.placement is not None:
                self.placement.release_all()
            if self.users is not None:
                self.users.delete()

    @staticmethod
    def _settle(refs: list, timeout_s: float) -> list[str]:
        """Wait for every call (a dead actor does not cut the others' clean-up short); what failed."""
        from ray.exceptions import GetTimeoutError

        from learner.actor_calls import gather

        try:
            return [type(o.error).__name__ for o in gather(refs, timeout_s) if not o.ok]
        except GetTimeoutError:
            return ["GetTimeoutError"]

    def _log_unclean(self, what: str, failed: list[str]) -> None:
        if failed:
            self.log(f"[grpo] stop: {what} did not finish cleanly ({', '.join(failed)}); killing them")

    # ------------------------------------------------------------------ the loop
    def run(self, steps: Optional[int] = None, scale_plan: Optional[dict[int, int]] = None) -> Path:
        """Train until ``learner.steps`` (or ``steps`` more); ``scale_plan`` maps step -> actor count.

        Survives (docs/RELIABILITY.md): rollout actors dying mid-sample (replaced, their prompts
        sampled again), broadcast receivers dying (replaced, the broadcast repeated), reward
        workers dying (replaced), learner ranks dying (restarted from the last checkpoint, the
        steps after it redone), clips that cannot be loaded and non-finite losses (skipped,
        counted, logged).
        """
        n_rows = self._train_rows()
        self.end = end = self.cfg.learner.steps if steps is None else self.step + steps
        logger = TrainLogger(self.run_dir, "grpo", end, 0, start_step=self.step)
        while self.step < end:
            if scale_plan and self.step in scale_plan:
                self.scale_rollout(scale_plan[self.step])
            self._apply_scale_request()
            self.rewards.check()
            try:
                self._run_step(n_rows, logger)
                if self.step == end:
                    self._settle_broadcast()  # every actor holds the final weights
            except LearnerLost as e:
                self._restart_learners(str(e))
                continue
            if self.step % self.cfg.learner.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
        logger.close()
        return self.export_final()

    def _train_rows(self) -> int:
        from aurora_rl.data import refavs_layout as layout

        n_rows = sum(1 for r in layout.read_metadata(Path(self.data.root)) if r.split == self.data.train_split)
        return min(n_rows, self.data.max_samples or n_rows)

    def trial_step(self) -> dict:
        """One real step of every role (sampling, [SEG] pass, rewards, the learner step, the
        broadcast) with nothing saved; the step's metrics (``aurora-rl preflight``)."""
        self.end = self.step + 1
        logger = TrainLogger(self.run_dir, "grpo", self.end, 0, start_step=self.step)
        self._run_step(self._train_rows(), logger)
        self._settle_broadcast()
        logger.close()
        return rows_by_step([self.run_dir / "metrics.jsonl"]).get(self.step, {})

    def memory(self) -> list[tuple[str, dict]]:
        """(worker, memory report) of every learner rank, rollout actor and reward worker, named as
        their log files are (learner-0, rollout-0, reward-0)."""
        from learner.actor_calls import gather

        roles = ([(f"learner-{r}", a) for r, a in enumerate(self.learners.ranks)]
                 + [(actor_id, a) for actor_id, a in self.rollout.actors.items()]
                 + [(f"reward-{i}", w) for i, w in enumerate(self.rewards.workers)])
        outcomes = gather([a.memory.remote() for _, a in roles], 120)
        return [(name, o.value if o.ok else {"error": f"{type(o.error).__name__}: {o.error}"})
                for (name, _), o in zip(roles, outcomes)]

    def _run_step(self, n_rows: int, logger: TrainLogger) -> None:
        """Sample, collect, learn, broadcast: one step, or a counted skip (the caller saves)."""
        import torch

        from aurora_rl.grpo.advantages import group_advantages
        from aurora_rl.records import encode

        cfg = self.cfg
        t_step = t0 = time.monotonic()
        self._sample_ahead(n_rows)
        sample = self.sampling.pop(self.step).finish()
        self._count_sampling_faults(sample)
        t_sample = time.monotonic() - t0
        if not sample.group_ids:
            return self._skip_step(logger, "no prompt of the step could be sampled")
        t0 = time.monotonic()
        before = dict(self.collector.counters)
        groups = self.collector.collect(sample.group_ids, cfg.rollout.sampling.group_size, self.version,
                                        cfg.queue.collect_timeout_s, while_waiting=self.rewards.check)
        self._log_drops(before)
        t_collect = time.monotonic() - t0
        if not groups:
            self.collector.ack_step()
            return self._skip_step(logger, f"every group was sampled more than {cfg.learner.max_policy_lag} "
                                           "policy versions ago (stale_dropped)")
        records = [r for group in groups for r in group]
        rewards = np.array([[r.reward for r in group] for group in groups], dtype=np.float32)
        adv = group_advantages(torch.from_numpy(rewards), cfg.objective.advantage, cfg.objective.adv_eps).flatten()
        k = cfg.learner.num_ranks
        t0 = time.monotonic()
        stats = self.learners.step([[encode(r) for r in records[i::k]] for i in range(k)],
                                   [adv[i::k].tolist() for i in range(k)], self.step, self.version)
        t_learn = time.monotonic() - t0
        if any(s["skipped"] for s in stats):
            dropped = self.collector.drop_step("nan_dropped")
            self.faults["nan_steps_skipped"] += 1
            losses = [s["loss"] for s in stats]
            return self._skip_step(logger, f"non-finite loss on the learner ranks {losses}: no update, "
                                                f"{dropped} records dropped")
        self.collector.ack_step()
        self.counters["learned"] += len(records)
        self.learned_groups[self.step + 1] = [group[0].group_id for group in groups]
        self.version += 1
        self.step += 1
        t0 = time.monotonic()
        if self.rollout.staged:  # asynchronous: the last broadcast ran while this step trained
            sync = self._settle_broadcast()
            self.broadcasting = self.rollout.start(self.version)
        else:
            sync = self.rollout.broadcast(self.version)
        t_sync = time.monotonic() - t0
        metrics = self._step_metrics(records, rewards, stats, sample.rollouts, sync,
                                     {"sample": t_sample, "reward_wait": t_collect, "learn": t_learn,
                                      "broadcast": t_sync, "step": time.monotonic() - t_step})
        logger.log(self.step, metrics, samples=len(records))

    def _sample_ahead(self, n_rows: int) -> None:
        """Start the sampling of every step up to ``learner.max_policy_lag`` ahead of the learner
        (this step alone when synchronous), none past the run's end.

        An asynchronous call may sample with any version it finds staged, but none older than the
        learner's current one less the steps it runs ahead: learned k steps later at most, its
        groups are at most k versions old.
        """
        from learner.rollout_dispatch import CallOptions, StepSampling

        cfg, k = self.cfg, self.cfg.learner.max_policy_lag
        while self.next_sample <= min(self.step + k, self.end - 1):
            s = self.next_sample
            options = CallOptions(max_prompts=cfg.rollout.prompts_per_batch, timeout_s=cfg.rollout.call_timeout_s)
            if self.rollout.staged:
                options.min_version = max(0, self.version + (s - self.step) - k)
                options.wait_s, options.epoch = self.rollout.weights_bound_s, self.rollout.epoch
            else:
                options.version = self.version
            self.sampling[s] = StepSampling(lambda: self.rollout.actors, self._step_prompts(s, n_rows),
                                            cfg.run.seed * 1_000_003 + s, options,
                                            lambda dead: self.rollout.replace_and_sync(dead, self.version),
                                            self.log, self.collector.expect).start()
            self.next_sample += 1

    def _step_prompts(self, step: int, n_rows: int) -> list[tuple[int, str]]:
        """Step ``step``'s (dataset index, group id) pairs: the rows a resumed checkpoint had in
        flight for it, else the step's place in the epochs (rollout_dispatch.step_prompts)."""
        from learner.rollout_dispatch import step_prompts

        rows = self.in_flight_rows.pop(step, None)
        if rows is None:
            return step_prompts(self.cfg.run.seed, step, self.cfg.learner.prompts_per_step, n_rows, self.attempt)
        return [(index, f"{self.attempt}/s{step}/p{j}") for j, index in enumerate(rows)]

    def _settle_broadcast(self) -> dict:
        """Wait for the broadcast started after the last step (asynchronous job); its metrics."""
        pending, self.broadcasting = self.broadcasting, None
        if pending is None:  # none sent, or settled early (``_drain``): its metrics, once
            sync, self.drained_sync = self.drained_sync, None
            return sync or {"broadcast_gb_per_s": 0.0, "broadcast_s": 0.0, "apply_s": 0.0}
        return self.rollout.settle(pending, self.version)

    def _drain(self) -> None:
        """Nothing left running on the rollout actors (before actors are added or removed): the
        started broadcast settled and the steps sampled ahead finished (kept for their turn)."""
        if self.broadcasting is not None:
            self.drained_sync = self._settle_broadcast()
        for sampling in self.sampling.values():
            sampling.finish()  # kept: its step's own finish() returns it

    def _count_sampling_faults(self, sample) -> None:
        self.collector.abandon(sample.abandoned)
        self.faults["groups_resampled"] += len(sample.abandoned)
        self.faults["groups_given_up"] += len(sample.given_up)
        self.faults["load_failures"] += len(sample.failed)
        for index, group_id, error in sample.failed:
            self.log(f"[grpo] step {self.step + 1}: prompt {index} (group {group_id}) skipped: {error}")

    def _log_drops(self, before: dict) -> None:
        dropped = {k: v - before[k] for k, v in self.collector.counters.items() if v > before[k]}
        if dropped:
            self.log(f"[grpo] step {self.step + 1}: records dropped (counted) {dropped}")

    def _skip_step(self, logger: TrainLogger, why: str) -> None:
        """The step passes without an update (same policy version); logged and counted."""
        self.faults["steps_skipped"] += 1
        self.step += 1
        self.log(f"[grpo] step {self.step} skipped: {why}")
        logger.log(self.step, {"step_skipped": 1.0, "version": float(self.version), **self._fault_metrics()})

    def _fault_metrics(self) -> dict:
        out = {k: float(v) for k, v in self.collector.counters.items()}
        out.update({k: float(v) for k, v in self.faults.items()})
        out["learned"] = float(self.counters["learned"])
        return out

    def _step_metrics(self, records, rewards, stats, rollouts, sync, phases) -> dict:
        from aurora_rl.grpo.step_metrics import step_metrics

        out = step_metrics(records, rewards, stats, rollouts, self.cfg.rollout.sampling.max_new_tokens, self.version,
                           self.cfg.learner.max_policy_lag)
        out["rollout_queue"] = float(self.collector.rollout_depth())
        out["scored_queue"] = float(self.collector.scored_depth())
        out["version"] = float(self.version)
        out["rollout_actors"] = float(len(self.rollout.actors))
        out["broadcast_gb_per_s"] = sync["broadcast_gb_per_s"]
        out["broadcast_s"] = sync["broadcast_s"]  # asynchronous: the broadcast that ran during this step
        # applying weights to the engines: at the broadcast (synchronous), before the calls (asynchronous)
        out["apply_s"] = max([sync["apply_s"]] + [r.get("apply_s", 0.0) for r in rollouts])
        out["weights_wait_s"] = max(r.get("weights_wait_s", 0.0) for r in rollouts)
        out.update({f"time_{k}_s": v for k, v in phases.items()})
        out.update(self._fault_metrics())
        return out

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Every rank's DeepSpeed state, rank 0's policy and the job's state, written aside and
        renamed into place whole with a manifest (learner/checkpoints.py); then ``latest``."""
        name = f"step_{self.step:06d}"
        partial = checkpoints.partial_folder(self.run_dir / "checkpoints", name)
        state = {"step": self.step, "version": self.version, "counters": self.counters,
                 "in_flight": self._in_flight()}
        self.learners.save(str(partial), state)  # returns when every rank has written
        (partial / "job_state.json").write_text(json.dumps(state))
        return checkpoints.commit(partial, name)

    def _in_flight(self) -> dict[str, list[int]]:
        """The dataset rows of every step after this one whose sampling has started (and of those a
        resumed checkpoint had in flight, not yet started): the checkpoint's prompt cursor is the
        step, and these are its groups in flight, sampled again on resume so none is lost."""
        rows = {str(s): rows for s, rows in self.in_flight_rows.items()}
        for s, sampling in self.sampling.items():
            rows[str(s)] = [index for index, _ in sampling.prompts]
        return rows

    def _restore(self, folder: Optional[Path] = None) -> None:
        """Load ``folder`` (default: the newest complete checkpoint) into the learners and the job."""
        checkpoints.refuse_foreign_folder(self.run_dir)
        folder = folder or checkpoints.newest_complete(self.run_dir / "checkpoints", self.log)
        if folder is None:
            raise FileNotFoundError(f"{self.run_dir}: nothing to resume (no complete checkpoint under checkpoints/)")
        self.learners.load(str(folder))
        state = json.loads((folder / "job_state.json").read_text())
        self.step, self.version, self.counters = state["step"], state["version"], state["counters"]
        self.in_flight_rows = {int(s): rows for s, rows in state.get("in_flight", {}).items()}
        self.sampling, self.next_sample = {}, self.step
        self.log(f"[grpo] resumed at step {self.step}, policy version {self.version} from {folder}"
                 + (f"; steps {sorted(self.in_flight_rows)} were in flight: their prompts are sampled again"
                    if self.in_flight_rows else ""))

    def _restart_learners(self, reason: str) -> None:
        """A learner rank died: start the group again from the last checkpoint, send its weights,
        and redo the steps after it under a new attempt id (the reward workers' exactly-once
        check must not take them for duplicates); whatever was collected for them is dropped."""
        self.faults["learner_restarts"] += 1
        self.log(f"[grpo] {reason}: restarting the learner group from the last checkpoint")
        lost_step, lost_attempt = max(self.step, self.next_sample - 1), self.attempt
        self.learners.restart()
        folder = checkpoints.newest_complete(self.run_dir / "checkpoints", self.log)  # verified once
        if folder is not None:
            self._restore(folder)
        else:
            self.step, self.version, self.counters = 0, 0, {"learned": 0}
            self.sampling, self.next_sample, self.in_flight_rows = {}, 0, {}
            self.log("[grpo] no checkpoint yet: starting again from step 0")
        self.broadcasting = None  # its sender is gone; the rebuild below sends the restored version
        self.attempt = secrets.token_hex(3)
        # every step sampled since the checkpoint, in flight ones included, is sampled again
        dropped = self.collector.abandon_step([f"{lost_attempt}/s{s}/" for s in range(self.step, lost_step + 1)])
        self.learned_groups = {s: g for s, g in self.learned_groups.items() if s <= self.step}
        self.log(f"[grpo] redoing steps {self.step + 1}..{lost_step + 1} ({dropped} collected records of the lost "
                 "step dropped)")
        if self.rollout.staged:
            self.rollout.rollback()  # calls made before give up waiting for versions that will not come
        self.rollout.broadcast(self.version, rebuild=True)

    def export_final(self) -> Path:
        import shutil

        folder = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        if checkpoints.problems(folder):
            folder = self.save_checkpoint()
        final = checkpoints.replace_tree(self.run_dir / "checkpoint",
                                         lambda new: shutil.copytree(folder / "policy", new))
        self.log(f"[grpo] final checkpoint: {final}")
        self.log(logs_line(self.run_dir / LOG_DIR, "grpo"))
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
