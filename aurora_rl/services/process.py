"""Start and stop helper processes by PID (never by name: other users' Ray or Redis stay up)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different TCP ports that were free a moment ago: all held open until every one
    is chosen (one at a time, the OS may hand out a port it just handed out)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants that are alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_pids(procs: list[psutil.Process], grace_s: float = 10.0, sig: int = signal.SIGTERM) -> list[int]:
    """Signal each process, wait up to ``grace_s``, SIGKILL what is left. Returns PIDs killed hard."""
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _, survivors = psutil.wait_procs(procs, timeout=grace_s)
    for p in survivors:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(survivors, timeout=5)
    return [p.pid for p in survivors]


def alive(pids: list[int]) -> list[int]:
    """The PIDs in ``pids`` that still run (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.1, on_fail=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if on_fail is not None:
            on_fail()
        time.sleep(poll_s)
    raise TimeoutError(f"{what} did not become ready within {timeout_s:.0f} s")


def kill_group_leader(pid: int) -> None:
    """SIGKILL one process (fault injection in tests and benchmarks)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
