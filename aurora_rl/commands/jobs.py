"""``aurora-rl status`` and ``aurora-rl scale`` for a running GRPO job (by its run folder)."""

from __future__ import annotations


def register(sub) -> None:
    status = sub.add_parser("status", help="live state of a GRPO job: step, version, rewards, queues, workers")
    status.add_argument("--run", required=True, help="the job's run folder (run.output_dir/run.name)")
    status.set_defaults(handler=show_status)
    scale = sub.add_parser("scale", help="change a running GRPO job's rollout actor count (between steps)")
    scale.add_argument("--run", required=True, help="the job's run folder")
    scale.add_argument("--rollout", type=int, required=True, help="wanted number of rollout actors")
    scale.set_defaults(handler=request_scale)


def _job(run: str) -> dict:
    from aurora_rl.services.job_file import read_job_file

    return read_job_file(run)


def show_status(args) -> int:
    from pathlib import Path

    from learner.train_log import rows_by_step

    job = _job(args.run)
    metrics = Path(args.run) / "metrics.jsonl"
    rows = rows_by_step([metrics]) if metrics.exists() else {}
    depth = _stream_depths(job)
    if not rows:
        print(f"{args.run}: started, no step finished yet; streams {depth}")
        _print_workers(job)
        return 0
    last = rows[max(rows)]
    rewards = " ".join(f"{k.removeprefix('reward_')} {v:.3f}" for k, v in last.items() if k.startswith("reward_"))
    print(f"step {last['step']}  policy version {int(last.get('version', 0))}  "
          f"rollout actors {int(last.get('rollout_actors', 0))}")
    spread = (f"  groups flat {last['groups_flat']:.2f} small spread {last['groups_small_spread']:.2f}"
              if "groups_flat" in last else "")
    print(f"reward {last.get('reward', float('nan')):.3f} ({rewards})  group std {last.get('group_reward_std', 0):.3f}"
          f"{spread}")
    print(f"loss {last.get('loss', 0):.4f}  kl {last.get('kl', 0):.4f}  clip {last.get('clip_fraction', 0):.3f}  "
          f"tokens/s {last.get('tokens_per_s', 0):.0f}  step time {last.get('time_step_s', 0):.1f} s")
    print(f"streams: {depth}  learned {int(last.get('learned', 0))}  dropped stale "
          f"{int(last.get('stale_dropped', 0))} duplicates {int(last.get('duplicates_dropped', 0))}")
    _print_workers(job)
    return 0


def _stream_depths(job: dict):
    """Records waiting in the job's two streams, or why they cannot be read: a finished job's
    private Redis stops with it, and the metrics are still worth showing."""
    from urllib.parse import urlsplit

    import redis
    from redis.exceptions import AuthenticationError, AuthorizationError

    from aurora_rl.services.redis_client import connect_redis

    where = urlsplit(job["redis_url"])  # host and port only: the URL carries the password
    try:
        client = connect_redis(job["redis_url"], retries=1)
        return {name: client.xlen(job[name]) for name in ("rollout_stream", "scored_stream")}
    except (AuthenticationError, AuthorizationError) as e:
        return f"unavailable (Redis at {where.hostname}:{where.port} refused us: {e}; {_no_secret(job)})"
    except redis.ConnectionError:
        return (f"unavailable (Redis at {where.hostname}:{where.port} does not answer: "
                "the job has ended or its Redis is down)")
    except redis.ResponseError as e:  # NOAUTH: the password is not on this machine
        return f"unavailable (Redis at {where.hostname}:{where.port}: {e}; {_no_secret(job)})"


def _no_secret(job: dict) -> str:
    return (f"its password is read from {job['secret_file']}, written by the job's driver: run this where "
            "the driver runs, or point AURORA_RL_SECRETS at the folder that holds it")


def _print_workers(job: dict) -> None:
    if "workers" in job:
        print(f"workers ({job['placement']} placement): {_workers_line(job['workers'])}")


def _workers_line(workers: dict) -> str:
    """``rollout 2 on node 1a2b3c4d x2 | reward 1 on ... | learner 2 on ...`` from job.json."""
    from collections import Counter

    parts = []
    for role in ("rollout", "reward", "learner"):
        nodes = list(workers[role].values()) if isinstance(workers[role], dict) else workers[role]
        where = ", ".join(f"{node[:8]} x{n}" for node, n in sorted(Counter(nodes).items()))
        parts.append(f"{role} {len(nodes)} on node {where}")
    return " | ".join(parts)


def request_scale(args) -> int:
    from aurora_rl.services.redis_client import connect_redis

    if args.rollout < 1:
        raise ValueError("at least one rollout actor")
    import redis
    from redis.exceptions import AuthenticationError, AuthorizationError

    job = _job(args.run)
    try:
        connect_redis(job["redis_url"], retries=1).set(job["scale_key"], args.rollout)
    except (AuthenticationError, AuthorizationError, redis.ResponseError) as e:
        raise PermissionError(f"the job's Redis refused the request ({e}); {_no_secret(job)}") from None
    print(f"asked {args.run} for {args.rollout} rollout actors (applied before its next step)")
    return 0
