"""``aurora-rl preflight CONFIG``: a stage's cluster checked before a long job.

Starts the stage's workers as the run would, takes one real step of each, then asks every one
for its device's memory. Nothing is kept: the job's folder is ``<run.name>-preflight``, emptied
first. One table: what was checked, where, ok, seconds, the process's memory, the device's free
memory of its total, and what will not fit or is tight.

- grpo: placement, rollout actors whose vLLM engines get the context length derived from the
  backbone, learner ranks in one DeepSpeed group, reward workers; the weight-broadcast group
  across their nodes and the first weights; one step of every role (sampling, [SEG] pass and
  SAM, rewards, the learner step, the broadcast of the new weights).
- sft: the training examples and their CoT, the initial checkpoint, then the Ray Train workers
  (DeepSpeed, the distillation teacher) take one step.
- reflect: the mining actors sample one clip each, one reflective example is made from what they
  sampled, and the Ray Train workers take one step over it and the stage-1 examples.
- eval: the evaluation actors answer one clip each (greedy vLLM, [SEG] pass, SAM).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aurora_rl.config.schema import EvalConfig, GRPOConfig, ReflectConfig, SFTConfig
from learner.train_log import say

TIGHT = 0.10  # a device with less free memory than this share of it is flagged


@dataclass
class Check:
    what: str
    ok: bool
    seconds: Optional[float] = None
    node: str = ""
    device: str = ""
    process_gib: Optional[float] = None
    free_gib: Optional[float] = None
    total_gib: Optional[float] = None
    note: str = ""


def error_line(error: BaseException) -> str:
    """The cause of a failure in one line (a Ray error ends with the original exception)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = lines[-1] if lines else ""
    return cause if ":" in cause else f"{type(error).__name__}: {cause}"


class Checks(list):
    """The table's rows in order; ``timed`` runs one check and adds its row."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def timed(self, what: str, fn) -> Optional[object]:
        """``fn()``'s value, or None when it raised (the row says why)."""
        self.log(f"[preflight] {what} ...")
        start = time.monotonic()
        try:
            out = fn()
        except Exception as e:  # what failed is a row of the table and the exit status
            self.append(Check(what, False, time.monotonic() - start, note=error_line(e)))
            return None
        self.append(Check(what, True, time.monotonic() - start))
        return True if out is None else out

    def memory(self, reports) -> None:
        self.extend(memory_check(role, report) for role, report in reports)


def preflight(cfg, redis_url: Optional[str], log=say) -> list[Check]:
    """The checks of ``cfg``'s stage, in order; a failed start ends them (the table says why)."""
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=f"{cfg.run.name}-preflight"))
    scratch = Path(cfg.run.output_dir) / cfg.run.name
    if scratch.exists():
        shutil.rmtree(scratch)  # a preflight's folder holds nothing to keep: start each one clean
    checks = Checks(log)
    if isinstance(cfg, GRPOConfig):
        preflight_grpo(cfg, redis_url, checks)
    elif isinstance(cfg, SFTConfig):
        preflight_sft(cfg, checks)
    elif isinstance(cfg, ReflectConfig):
        preflight_reflect(cfg, checks)
    elif isinstance(cfg, EvalConfig):
        preflight_eval(cfg, checks)
    else:
        raise TypeError(f"no preflight for a {type(cfg).__name__}")
    return list(checks)


def preflight_grpo(cfg: GRPOConfig, redis_url: str, checks: Checks) -> None:
    from learner.grpo_job import GRPOJob

    job = GRPOJob(cfg, redis_url, log=checks.log)
    try:
        roles = (f"{count(cfg.rollout.num_actors, 'rollout engine')}, {count(cfg.learner.num_ranks, 'learner rank')}, "
                 f"{count(cfg.reward.num_workers, 'reward worker')}")
        if not checks.timed(f"start: {roles}, the broadcast group and the first weights", job.start):
            return
        metrics = checks.timed("one step of every role: sampling + [SEG] + SAM, rewards, learner, broadcast",
                               job.trial_step)
        if metrics:
            checks[-1].note = (f"reward {metrics.get('reward', float('nan')):.3g}, "
                               f"{metrics.get('completion_tokens', 0):.0f} tokens per completion, learner "
                               f"{metrics.get('time_learn_s', 0):.2f} s, "
                               f"broadcast {metrics.get('time_broadcast_s', 0):.2f} s")
        checks.memory(job.memory())
    finally:
        job.stop()


def preflight_sft(cfg: SFTConfig, checks: Checks, stage: str = "sft", examples=None) -> None:
    """One step of the stage's Ray Train workers over ``examples`` (default: the stage's own,
    built and counted as the run builds them)."""
    from learner.sft_job import build_examples, trial_sft

    if examples is None:
        examples = checks.timed("training examples: the training split and its CoT", lambda: build_examples(cfg))
        if examples is None or no_examples(examples, checks):
            return
        checks[-1].note = f"{len(examples)} examples"
    tr = cfg.trainer
    teacher = ", the distillation teacher" if cfg.loss.distill > 0 and not cfg.direct_answer else ""
    metrics = checks.timed(f"one step: {count(tr.num_workers, 'Ray Train worker')} x batch "
                           f"{tr.batch_size_per_worker}, DeepSpeed ZeRO-{tr.deepspeed.zero_stage}{teacher}",
                           lambda: trial_sft(cfg, stage, examples))
    if metrics:
        checks[-1].note = f"loss {metrics.get('loss', float('nan')):.3g}"
        checks.memory((f"{stage}-rank{r}", report) for r, report in enumerate(metrics["memory"]))


def preflight_eval(cfg: EvalConfig, checks: Checks) -> None:
    from aurora_rl.model.checkpoint import data_config_for

    d = cfg.data
    data = checks.timed("the checkpoint and its data", lambda: data_config_for(cfg.model.path, d.root, layout=d.layout))
    if data:
        answer_one_clip_each(cfg.model.path, data, d.eval_splits[0], Path(cfg.run.output_dir) / cfg.run.name, checks,
                             cfg.num_actors, 1.0, cfg.max_new_tokens, cfg.gpus_per_actor, "evaluation", "eval")


def preflight_reflect(cfg: ReflectConfig, checks: Checks) -> None:
    from aurora_rl.model.checkpoint import check_data_matches
    from learner.reflect_job import reflective_answer, sft_config
    from learner.sft_data import SFTExample
    from learner.sft_job import build_examples

    if not checks.timed("the stage-1 checkpoint and its data",
                        lambda: check_data_matches(cfg.model.path, cfg.data, f"reflect run {cfg.run.name}")):
        return
    r = cfg.rollout
    preds = answer_one_clip_each(cfg.model.path, cfg.data, cfg.data.train_split, Path(cfg.run.output_dir) / cfg.run.name,
                                 checks, r.num_actors, r.kv_cache_gib, r.sampling.max_new_tokens,
                                 cfg.mining_gpus_per_actor, "mining", "reflect", r.sampling)
    if not preds:
        return
    sft_cfg = sft_config(cfg)
    base = checks.timed("stage-1 examples and the corrector's CoT", lambda: build_examples(sft_cfg))
    if base is None or no_examples(base, checks):
        return
    # the longest completion sampled, corrected by a stage-1 answer: a reflective example as long as
    # mining makes; every worker's first batch holds only it, so the step's memory is the stage's worst
    longest = max(preds, key=lambda p: len(p["text"]))
    reflective = SFTExample(longest["uid"], int(longest["index"]),
                            reflective_answer(longest["text"], base[0].answer, cfg.trigger), base[0].target_class)
    checks[-1].note = f"{len(base)} examples; the step trains on a reflective one made from the longest mined answer"
    tr = sft_cfg.trainer
    preflight_sft(sft_cfg, checks, "reflect", [reflective] * (tr.batch_size_per_worker * tr.num_workers))


def no_examples(examples: list, checks: Checks) -> bool:
    """An empty training set is a failed row: the run would have nothing to learn from."""
    if not examples:
        checks[-1].ok, checks[-1].note = False, "no training examples: check data.train_split, data.max_samples, cot"
    return not examples


def answer_one_clip_each(checkpoint, data, split: str, work_dir: Path, checks: Checks, num_actors: int,
                         kv_cache_gib: float, max_new_tokens: int, gpus: float, role: str, label: str,
                         sampling=None) -> Optional[list[dict]]:
    """``num_actors`` evaluation actors started as the stage starts them, each answering the first
    clip of ``split`` (greedy, or ``sampling``), then their memory; their predictions (None: a failure)."""
    import ray

    from actors.eval_pool import EvalPool

    with EvalPool(checkpoint, data, work_dir, num_actors, kv_cache_gib, max_new_tokens, name=role, label=label,
                  gpus_per_actor=gpus) as pool:
        # a worker's constructor error arrives with its first call: the start is its own row
        if not checks.timed(f"start: {count(num_actors, role + ' actor')} (vLLM engine, [SEG] pass, SAM)",
                            lambda: ray.get([w.memory.remote() for w in pool.workers])):
            return None
        how = "greedy" if sampling is None else f"{sampling.group_size} sampled answers"
        parts = checks.timed(f"one clip per {role} actor: {how} + [SEG] + SAM",
                             lambda: ray.get([w.run.remote(split, [0], sampling, seed=k) for k, w in enumerate(pool.workers)]))
        if not parts:
            return None
        preds = [p for part in parts for p in part]
        checks[-1].note = f"{max(len(p['text']) for p in preds)} characters in the longest answer"
        checks.memory((f"{role}-{k}", report) for k, report in enumerate(ray.get([w.memory.remote()
                                                                                    for w in pool.workers])))
        return preds


def count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def memory_check(role: str, report: dict) -> Check:
    if "error" in report:
        return Check(f"{role}: memory", False, note=report["error"])
    free, total = report["free_gib"], report["total_gib"]
    note = f"vLLM max_model_len {report['max_model_len']}" if "max_model_len" in report else ""
    if free < TIGHT * total:
        note = f"tight: {free / total:.0%} of the device free" + (f"; {note}" if note else "")
    return Check(f"{role}: memory", True, node=report.get("node", ""), device=report["device"],
                 process_gib=report["process_gib"], free_gib=free, total_gib=total, note=note)


def table(checks: list[Check]) -> str:
    def gib(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| check | ok | seconds | node | device | process GiB | free / total GiB | note |",
             "|---|---|---:|---|---|---:|---:|---|"]
    for c in checks:
        free = "-" if c.total_gib is None else f"{gib(c.free_gib)} / {gib(c.total_gib)}"
        lines.append(f"| {c.what} | {'yes' if c.ok else 'NO'} | {'-' if c.seconds is None else f'{c.seconds:.1f}'} | "
                     f"{c.node or '-'} | {c.device or '-'} | {gib(c.process_gib)} | {free} | {c.note} |")
    return "\n".join(lines)
