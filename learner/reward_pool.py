"""The GRPO job's reward workers: M ``RewardWorker`` actors in one placement group, each running
its scoring loop (``run``) for the whole job.

    start  the workers, each in its bundle, their loops started
    check  a worker whose loop ended (the actor died, or it raised) is replaced by a new one in
           the same bundle; the messages it held are reclaimed by the others (stream_scorer.py).
           Beyond ``reward.max_worker_deaths`` replacements the job stops (``RewardWorkersFailing``):
           workers that keep dying point at a cause a new worker will not fix
    stop   every loop told to stop, awaited, the actors killed
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from aurora_rl.config.schema import DataConfig, GRPOConfig, QueueConfig
from aurora_rl.records import RecordLimits
from aurora_rl.services.library_logs import worker_log
from learner.actor_calls import gather
from learner.placement import JobPlacement


class RewardWorkersFailing(RuntimeError):
    """Reward workers died more often than ``reward.max_worker_deaths`` allows."""


class RewardPool:
    def __init__(self, cfg: GRPOConfig, redis_url: str, queue: QueueConfig, data: DataConfig, limits: RecordLimits,
                 placement: JobPlacement, run_dir: Path, faults: dict[str, int], log: Callable[[str], None]):
        self.cfg = cfg
        self.redis_url = redis_url
        self.queue = queue
        self.data = data
        self.placement = placement
        self.run_dir = run_dir
        self.faults = faults
        self.log = log
        self.bundles: list[dict] = []
        self.workers: list = []
        self.runs: list = []  # each worker's running ``run`` call
        self.started = 0  # workers started so far (names stay unique)
        self.deaths = 0  # workers replaced so far
        self.limits = limits  # a record beyond what the run's sampling makes is refused unread

    def start(self) -> None:
        m = self.cfg.reward.num_workers
        self.bundles = self.placement.reserve("reward", "reward", m, self.cfg.placement.reward_strategy)
        for i in range(m):
            self.workers.append(None)
            self.runs.append(None)
            self._start(i)

    def _start(self, i: int) -> None:
        from rewards.reward_worker import RewardWorker

        name = f"scorer-{self.started}"
        worker = RewardWorker.options(**self.bundles[i]).remote(self.redis_url, self.queue, self.cfg.reward, self.data,
                                                                name, limits=self.limits,
                                                                log_file=str(worker_log(self.run_dir, name)))
        self.started += 1
        self.workers[i], self.runs[i] = worker, worker.run.remote()

    def check(self) -> list[int]:
        """Replace every worker whose scoring loop has ended; the indices replaced."""
        import ray

        ended, _ = ray.wait(list(self.runs), num_returns=len(self.runs), timeout=0)
        ended_set = set(ended)
        replaced = [i for i, run in enumerate(self.runs) if run in ended_set]
        for i, outcome in zip(replaced, gather([self.runs[i] for i in replaced])):
            why = "died" if outcome.died else f"stopped ({type(outcome.error).__name__ if outcome.error else 'returned'})"
            ray.kill(self.workers[i])
            self.deaths += 1
            limit = self.cfg.reward.max_worker_deaths
            if self.deaths > limit:
                raise RewardWorkersFailing(
                    f"reward worker {i} {why}: {self.deaths} reward workers lost, more than reward.max_worker_deaths="
                    f"{limit}; their logs are under {self.run_dir / 'logs'} (scorer-*.log)")
            self._start(i)
            self.faults["reward_workers_replaced"] += 1
            self.log(f"[grpo] reward worker {i} {why}; a new one takes its place ({self.deaths} of at most {limit})")
        return replaced

    def stop(self, timeout_s: float = 60.0) -> list[str]:
        """Stop every loop and kill the actors; what did not finish cleanly."""
        import ray
        from ray.exceptions import GetTimeoutError

        for w in self.workers:
            w.stop.remote()
        try:
            failed = [type(o.error).__name__ for o in gather(self.runs, timeout_s) if not o.ok] if self.runs else []
        except GetTimeoutError:
            failed = ["GetTimeoutError"]
        for w in self.workers:
            ray.kill(w)
        self.workers, self.runs = [], []
        return failed
