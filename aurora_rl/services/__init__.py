"""Local services a run needs: a private redis-server and a private Ray node, stopped by PID."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from aurora_rl.config.schema import ServicesConfig


@dataclass
class RunServices:
    redis_url: Optional[str]
    ray_address: str
    dashboard_url: Optional[str]


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Put back the Python SIGTERM handler that the body replaces.

    ``ray.init`` installs Ray's own handler in the driver, which logs the signal and ends the
    process at once: the ``with`` blocks around it (a private Redis, the Ray node) would never
    unwind. The CLI's handler (``aurora_rl.cli.exit_on_sigterm``) is restored after it.
    """
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(before) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)


# The workers' output is not forwarded to the driver's console (they write it to the run folder,
# aurora_rl/services/library_logs.py), and Ray's own driver lines stay below WARNING.
QUIET_RAY = {"log_to_driver": False, "logging_level": logging.WARNING}


def read_redis_url(value: Optional[str]) -> Optional[str]:
    """``services.redis_url`` as given, or read from the file it names as ``file:<path>``: the URL
    carries the password, which then appears on no command line and in no job entrypoint that the
    Ray dashboard lists. The file must be readable by its owner only."""
    if value is None or not value.startswith("file:"):
        return value
    import stat

    path = Path(value.removeprefix("file:")).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"services.redis_url: {path} does not exist (cluster/start_redis.sh writes it)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"services.redis_url: {path} holds a password and others may read it (mode "
                              f"{mode:o}); chmod 600 {path}")
    return path.read_text().strip()


@contextlib.contextmanager
def run_services(cfg: ServicesConfig, log=print, need_redis: bool = True) -> Iterator[RunServices]:
    """Use the Redis / Ray named in ``cfg``; start private ones for those left null.

    A driver already connected to Ray keeps its connection; ``RAY_ADDRESS`` (set by ``ray job
    submit``) names the cluster when the config does not. Whatever this started is stopped on exit, also when the body raises.
    """
    import ray

    from aurora_rl.services.ray_cluster import LocalRayNode
    from aurora_rl.services.redis_server import RedisServer

    with contextlib.ExitStack() as stack:
        redis_url = read_redis_url(cfg.redis_url)
        if redis_url is None and need_redis:
            server = stack.enter_context(RedisServer())
            redis_url = server.url
            log(f"[services] private redis-server pid {server.pid} on 127.0.0.1:{server.port} ({server.workdir})")
        dashboard = None
        ray_address = cfg.ray_address or os.environ.get("RAY_ADDRESS")  # set by `ray job submit`
        if ray.is_initialized():
            address = ray.get_runtime_context().gcs_address
        elif ray_address is None:
            # Actors mostly wait on each other (sampling, scoring, learning take turns), so the
            # node offers more logical CPUs than cores: a full GRPO job (2 rollout actors,
            # 2 reward workers, 2 learner ranks) then fits on a 2-core machine.
            node = stack.enter_context(LocalRayNode(num_cpus=max(16, os.cpu_count() or 1)))
            with keep_sigterm_handler():
                node.connect(**QUIET_RAY)
            address, dashboard = node.address, node.dashboard_url
            log(f"[services] private Ray node at {address}; dashboard {dashboard} (its login asks for the token in "
                f"{node.token_path})")
            stack.callback(ray.shutdown)
        else:
            with keep_sigterm_handler():
                ray.init(address=ray_address, **QUIET_RAY)
            address = ray_address
            stack.callback(ray.shutdown)
        yield RunServices(redis_url=redis_url, ray_address=address, dashboard_url=dashboard)
    sys.stdout.flush()
