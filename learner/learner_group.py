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
from typing import Optional

from aurora_rl.config.schema import GRPOConfig
from aurora_rl.services.library_logs import worker_log
from learner.actor_calls import Stranded, alive, gather, results
from learner.placement import JobPlacement


STRANDED_S = 120.0  # a peer still in the step this long after a rank raised waits for it forever


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
        return results([self.sender.weight_specs.remote()], self.cfg.learner.step_timeout_s, rank_names(1),
                       "the trainable weights' shapes")[0]

    def step(self, payloads: list[list[bytes]], advantages: list[list[float]], step: int,
             version: Optional[int] = None) -> list[dict]:
        """One optimizer step on every rank (rank r gets ``payloads[r]``; ``version``: the policy
        version before the step, None: every record at lag 0); ``LearnerLost`` when a rank died
        during it. A rank that raised leaves its peers waiting in the step's collectives: after
        ``STRANDED_S`` they are stopped, and the rank's error ends the job (it would recur)."""
        names = rank_names(len(self.ranks))
        outcomes = gather([rank.train_step.remote(p, a, step, version)
                           for rank, p, a in zip(self.ranks, payloads, advantages)], self.cfg.learner.step_timeout_s,
                          settle_s=STRANDED_S, names=names, what=f"learner step {step + 1}")
        if all(o.ok for o in outcomes):
            return [o.value for o in outcomes]
        stranded = [r for r, o in enumerate(outcomes) if isinstance(o.error, Stranded)]
        answered = [r for r, o in enumerate(outcomes) if r not in stranded]
        dead = [r for r in answered if outcomes[r].died or not alive(self.ranks[r], name=names[r])]
        if dead:
            raise LearnerLost(f"learner ranks {dead} died during step {step + 1}")
        rank = next(r for r in answered if not outcomes[r].ok)
        self.kill()  # the stranded ranks never return: none of the group can step again
        raise RuntimeError(f"learner rank {rank} failed in step {step + 1}"
                           + (f" (ranks {stranded} were left waiting for it and were stopped)" if stranded else "")
                           + f": {outcomes[rank].error}") from outcomes[rank].error

    def save(self, folder: str, state: dict) -> None:
        results([rank.save.remote(folder, state) for rank in self.ranks], self.cfg.learner.step_timeout_s,
                rank_names(len(self.ranks)), f"saving the checkpoint {folder}")

    def load(self, folder: str) -> None:
        results([rank.load.remote(folder) for rank in self.ranks], self.cfg.learner.step_timeout_s,
                rank_names(len(self.ranks)), f"loading the checkpoint {folder}")

    def shutdown_calls(self) -> list:
        """Each rank's shutdown call (the caller waits for them with its own timeout)."""
        return [rank.shutdown.remote() for rank in self.ranks]

    def kill(self) -> None:
        import ray

        for rank in self.ranks:
            ray.kill(rank)
        self.ranks = []


def rank_names(count: int) -> list[str]:
    """How errors and logs name the first ``count`` learner ranks."""
    return [f"learner rank {r}" for r in range(count)]


def join_ranks(ranks: list) -> list[dict]:
    """Rank actors set up as one DeepSpeed group, meeting at a store rank 0 opens; their setups."""
    from learner.grpo_learner import RENDEZVOUS_TIMEOUT_S

    names = rank_names(len(ranks))
    (store,) = results([ranks[0].open_store.remote(len(ranks), RENDEZVOUS_TIMEOUT_S)], RENDEZVOUS_TIMEOUT_S, names[:1],
                       "the learner group's store")
    return results([rank.setup.remote(*store) for rank in ranks], 2 * RENDEZVOUS_TIMEOUT_S, names,
                   "the learner group's setup")
