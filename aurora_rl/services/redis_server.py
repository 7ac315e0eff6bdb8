"""A private redis-server: free loopback port, its own temp dir, append-only file on.

Used by the main job and the tests. Stopped by PID; ``crash()`` + ``start()`` restarts it on
the same port and directory so that the append-only file is replayed (fault tests).

``appendfsync always`` by default: a write is on disk before Redis acknowledges it, so a
killed server loses no record a producer was told was stored. With ``everysec`` Redis may
acknowledge writes it has not yet written while a slow background fsync runs (up to 2 s): on a
loaded machine the fault suite lost two acknowledged records to a SIGKILL with it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from aurora_rl.services.files import write_whole
from aurora_rl.services.process import free_port, stop_pids, process_tree, tail, wait_until


class RedisServer:
    def __init__(
        self,
        workdir: str | Path | None = None,
        port: int | None = None,
        password: str | None = None,
        bind: str = "127.0.0.1",
        appendonly: bool = True,
        appendfsync: str = "always",
    ):
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="aurora-redis-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.password = password if password is not None else secrets.token_hex(16)
        self.bind = bind
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.bind}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)

    def _write_conf(self) -> Path:
        """redis.conf, readable by its owner only (it holds the password)."""
        conf = self.workdir / "redis.conf"
        lines = [f"bind {self.bind}", "protected-mode yes", f"port {self.port}", f"dir {self.workdir}",
                 f"requirepass {self.password}", f"appendonly {'yes' if self.appendonly else 'no'}",
                 f"appendfsync {self.appendfsync}", 'save ""', "daemonize no", f"logfile {self.workdir / 'redis.log'}"]
        write_whole(conf, "\n".join(lines) + "\n", mode=0o600)
        return conf

    def start(self, timeout_s: float = 15.0) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; run `make setup` (installs the Debian package)")
        fixed_port = self.port is not None
        for _ in range(5):
            if not fixed_port:
                self.port = free_port(self.bind)
            self.proc = subprocess.Popen(
                [exe, str(self._write_conf())],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                wait_until(self._answers, timeout_s, f"redis-server on port {self.port}", on_fail=self._check_alive)
                return self
            except RuntimeError:
                if fixed_port:
                    raise
        raise RuntimeError(f"redis-server did not start; log:\n{tail(self.workdir / 'redis.log')}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {self.proc.returncode}; log {self.workdir / 'redis.log'}:\n"
                f"{tail(self.workdir / 'redis.log')}"
            )

    def _answers(self) -> bool:
        try:
            return bool(self.client(socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def crash(self) -> None:
        """SIGKILL the server (no shutdown save). ``start()`` brings it back from its AOF."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_pids(process_tree(self.proc.pid), grace_s=10)
            self.proc.wait()
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
