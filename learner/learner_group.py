"""The GRPO job's learner group: K ``LearnerRank`` actors in one placement group, one DeepSpeed group.

    launch   the ranks start and load the policy (the caller goes on: other roles load meanwhile)
    join     they form the DeepSpeed group (waits until every rank has loaded)
    restart  a rank died: every rank is stopped and the group started again (the job then
             restores its last checkpoint into it)
    step     one optimizer step on every rank; ``LearnerLost`` when a rank died during it
    save / load  DeepSpeed state on every rank, the policy checkpoint from rank 0

Rank 0 also sends the weight broadcast (``sender``).
"""

from __future__ import annotations

from pathlib import Path

from aurora_rl.config.schema import GRPOConfig
from aurora_rl.services.library_logs import worker_log
from learner.actor_calls import alive, gather
from learner.placement import JobPlacement


class LearnerLost(RuntimeError):
    """A learner rank died: the DeepSpeed group is gone and must be started again."""


class LearnerGroup:
    def __init__(self, cfg: GRPOConfig, checkpoint: str, placement: JobPlacement, run_dir: Path):
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.placement = placement
        self.run_dir = run_dir
        self.ranks: list = []

    @property
    def sender(self):
        """Rank 0: the member of the weight-broadcast group that sends."""
        return self.ranks[0]

    def launch(self) -> None:
        """The K rank actors in their placement group; they load the policy while the caller goes on."""
        from learner.grpo_learner import LearnerRank

        k = self.cfg.learner.num_ranks
        self.placement.release("learner")
        bundles = self.placement.reserve("learner", "learner", k, self.cfg.placement.learner_strategy)
        self.ranks = [LearnerRank.options(**bundles[r]).remote(r, k, self.cfg, self.checkpoint, self.cfg.learner.use_gpu,
                                                               str(worker_log(self.run_dir, f"learner-{r}")))
                      for r in range(k)]

    def join(self) -> None:
        """The launched ranks join one DeepSpeed group (waits for every rank to be loaded)."""
        join_ranks(self.ranks)

    def restart(self) -> None:
        """Every rank stopped, the group launched and joined again (from the start checkpoint)."""
        import ray

        for rank in self.ranks:
            ray.kill(rank)
        self.ranks = []
        self.launch()
        self.join()

    def weight_specs(self) -> list:
        import ray

        return ray.get(self.sender.weight_specs.remote())

    def step(self, payloads: list[list[bytes]], advantages: list[list[float]], step: int) -> list[dict]:
        """One optimizer step on every rank (rank r gets ``payloads[r]``); ``LearnerLost`` when a
        rank died during it."""
        outcomes = gather([rank.train_step.remote(p, a, step) for rank, p, a in zip(self.ranks, payloads, advantages)])
        if all(o.ok for o in outcomes):
            return [o.value for o in outcomes]
        dead = [r for r, o in enumerate(outcomes) if o.died or not alive(self.ranks[r])]
        if dead:
            raise LearnerLost(f"learner ranks {dead} died during step {step + 1}")
        raise next(o.error for o in outcomes if not o.ok)

    def save(self, folder: str, state: dict) -> None:
        import ray

        ray.get([rank.save.remote(folder, state) for rank in self.ranks])

    def load(self, folder: str) -> None:
        import ray

        ray.get([rank.load.remote(folder) for rank in self.ranks])

    def shutdown_calls(self) -> list:
        """Each rank's shutdown call (the caller waits for them with its own timeout)."""
        return [rank.shutdown.remote() for rank in self.ranks]

    def kill(self) -> None:
        import ray

        for rank in self.ranks:
            ray.kill(rank)
        self.ranks = []


def join_ranks(ranks: list) -> list[dict]:
    """Rank actors set up as one DeepSpeed group, meeting at a store rank 0 opens; their setups."""
    import ray

    from learner.grpo_learner import RENDEZVOUS_TIMEOUT_S

    host, port = ray.get(ranks[0].open_store.remote(len(ranks), RENDEZVOUS_TIMEOUT_S))
    return ray.get([rank.setup.remote(host, port) for rank in ranks])
