"""A private local Ray node started with ``ray start --block`` and stopped by PID.

Every port is chosen free and the node has its own short temp dir, so several nodes (a head
and workers with other custom resources, as the two-node tests use) and a user's own Ray can
share one machine. Never the Ray CLI's stop command: it ends every Ray process on the machine.

Token authentication (on by default in Ray 2.60) stays on. Each private cluster gets its own
token in ``<temp dir>/auth_token``; the node and every client that should reach it (this
driver after ``connect()``, ``ray job submit`` from ``client_env()``) get
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` pointing at it. The user's
``~/.ray/auth_token`` is never read or written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from aurora_rl.services.process import alive, free_ports, port_open, process_tree, stop_pids, tail, wait_until


def _ray_exe() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


class LocalRayNode:
    def __init__(
        self,
        head_address: str | None = None,
        token_path: str | Path | None = None,
        num_cpus: int | None = None,
        resources: dict[str, float] | None = None,
        num_gpus: int | None = None,
        include_dashboard: bool = True,
        object_store_mb: int = 512,
        env: dict[str, str] | None = None,
    ):
        """A head node (``head_address`` None) or a worker joining ``head_address``.

        A worker must be given the head's ``token_path``.
        """
        self.head = head_address is None
        self.address = head_address
        self.temp_dir = Path(tempfile.mkdtemp(prefix="aray-", dir="/tmp"))
        self.token_path = Path(token_path) if token_path else self.temp_dir / "auth_token"
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus  # declared GPUs: Ray schedules by the numbers it is given
        self.resources = resources or {}
        self.include_dashboard = include_dashboard and self.head
        self.object_store_mb = object_store_mb
        self.extra_env = env or {}
        self.dashboard_port: int | None = None
        self.metrics_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._pids: list[int] = []

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def client_env(self) -> dict[str, str]:
        """Environment for any process that talks to this cluster (drivers, ``ray job submit``)."""
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        if self.dashboard_port:
            env["RAY_API_SERVER_ADDRESS"] = self.dashboard_url
            env["RAY_ADDRESS"] = self.address or ""
        return env

    def _command(self, ports: list[int]) -> list[str]:
        """``ray start`` with every port of the node given: ``ports``, seven different free ones."""
        port = ports.pop()
        cmd = [
            _ray_exe(), "start", "--block", "--disable-usage-stats",
            "--temp-dir", str(self.temp_dir),
            "--node-ip-address", "127.0.0.1",
            "--node-manager-port", str(ports.pop()),
            "--object-manager-port", str(ports.pop()),
            "--runtime-env-agent-port", str(ports.pop()),
            "--dashboard-agent-listen-port", str(ports.pop()),
            "--dashboard-agent-grpc-port", str(ports.pop()),
            "--metrics-export-port", str(self.metrics_port),
            "--object-store-memory", str(self.object_store_mb * 1024 * 1024),
        ]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        if self.num_gpus is not None:
            cmd += ["--num-gpus", str(self.num_gpus)]
        if self.resources:
            cmd += ["--resources", json.dumps(self.resources)]
        if self.head:
            self.address = f"127.0.0.1:{port}"
            cmd += ["--head", "--port", str(port), "--ray-client-server-port", str(ports.pop())]
            if self.include_dashboard:
                cmd += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                        "--dashboard-port", str(self.dashboard_port)]
            else:
                cmd += ["--include-dashboard", "false"]
        else:
            cmd += ["--address", self.address]
        return cmd

    def start(self, timeout_s: float = 90.0) -> "LocalRayNode":
        if self.head and not self.token_path.exists():
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        # nine ports, all different: two picked apart can coincide, and ray start refuses that
        ports = free_ports(9)
        self.metrics_port = ports.pop()
        dashboard_port = ports.pop()
        if self.include_dashboard:
            self.dashboard_port = dashboard_port
        cmd = self._command(ports)
        env = {**os.environ, **self.extra_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        # On SIGTERM Ray first drains the node, waiting up to 30 s for every worker lease to come
        # back (for Serve replicas behind a load balancer). Nothing of ours needs it: by the time
        # a private node is stopped its jobs are over, and a lease held by an idle worker (one a
        # submitted job left, say) would only make the stop 30 s slower.
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        log = open(self.temp_dir / "ray-start.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        wait_until(self._ready, timeout_s, f"Ray node in {self.temp_dir}", poll_s=0.25, on_fail=self._check_alive)
        self._pids = [p.pid for p in process_tree(self.proc.pid)]
        return self

    def _raylet_running(self) -> bool:
        return any("raylet" in " ".join(p.cmdline()) for p in process_tree(self.proc.pid) if _safe(p))

    def _ready(self) -> bool:
        if not self._raylet_running():
            return False
        if self.head:
            host, port = self.address.split(":")
            if not port_open(host, int(port)):
                return False
            if self.include_dashboard and not port_open("127.0.0.1", self.dashboard_port):
                return False
        return True

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"`ray start` exited with {self.proc.returncode}:\n{tail(self.temp_dir / 'ray-start.log')}"
            )

    def pids(self) -> list[int]:
        """PIDs of every process of this node started so far (workers included)."""
        if self.proc is not None:
            self._pids = sorted(set(self._pids) | {p.pid for p in process_tree(self.proc.pid)})
        return list(self._pids)

    def connect(self, attempts: int = 3, **init_kwargs):
        """``ray.init`` this driver against the node (sets the auth environment first).

        On a machine whose cores are all busy, a node that has just started can register its
        raylet with the GCS later than the driver waits for it ("Timed out while waiting for GCS
        to become available"): the connection is tried again, up to ``attempts`` times.
        """
        apply_client_env(self.client_env())
        import ray

        for attempt in range(1, attempts + 1):
            try:
                return ray.init(address=self.address, **init_kwargs)
            except (RuntimeError, ConnectionError) as e:  # ray.init's ConnectionError wraps the GCS timeout
                if attempt == attempts or "GCS" not in f"{e} {e.__cause__}":
                    raise
                ray.shutdown()
                print(f"[services] connecting to the Ray node at {self.address} failed ({e.__cause__ or e}); "
                      f"trying again ({attempt} of {attempts})", file=sys.stderr, flush=True)
                time.sleep(2.0 * attempt)

    def stop(self) -> list[int]:
        """Stop every process this node started; returns PIDs that needed SIGKILL.

        SIGTERM to ``ray start --block`` makes it shut its own processes down (about 2 s);
        anything of ours still running after that is stopped by PID. A node whose ``ray start``
        had already exited died on its own: its temp dir (``ray-start.log``, ``session_*/logs``)
        is kept for a post-mortem, less the auth token, and its path printed.
        """
        if self.proc is None:
            return []
        self.pids()
        died = self.proc.poll()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # A worker the raylet was still spawning when the node stopped is in no tree snapshot (and
        # is re-parented once the raylet goes); every process of this node names its temp dir.
        leftover = {p: psutil.Process(p) for p in alive(self._pids)}
        leftover.update((p.pid, p) for p in _naming(self.temp_dir) if p.pid not in leftover)
        killed = stop_pids(list(leftover.values()), grace_s=5) if leftover else []
        self.proc = None
        if died is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        else:
            if self.token_path.parent == self.temp_dir:
                self.token_path.unlink(missing_ok=True)
            print(f"[services] the Ray node in {self.temp_dir} had exited on its own (code {died}); its logs are "
                  "kept there", file=sys.stderr, flush=True)
        return killed

    def __enter__(self) -> "LocalRayNode":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def apply_client_env(env: dict[str, str]) -> None:
    """Put the auth settings into this process's environment, and into Ray's cached config if
    Ray was imported before (it reads RAY_AUTH_MODE once, at import)."""
    os.environ.update(env)
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _naming(path: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``path`` (zombies and vanished ones left out)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and str(path) in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def _safe(p) -> bool:
    try:
        p.cmdline()
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
