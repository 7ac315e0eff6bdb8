"""An object living in its own spawned process, its methods called over a pipe.

Benchmarks use it to hold each contender (an HF policy, a vLLM engine with one thread binding,
a broadcast group member) in a process of its own, as in a real job, while the parent calls
them in turns. The class must be importable by the child: define it at module level in the
benchmark script (spawn re-imports the script as ``__mp_main__``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback


def _serve(conn, cls, args, kwargs, env) -> None:
    os.environ.update(env)  # before the object imports vLLM, torch threads are fixed, ...
    try:
        obj = cls(*args, **kwargs)
        conn.send(("ok", None))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            return
        method, margs, mkwargs = message
        try:
            conn.send(("ok", getattr(obj, method)(*margs, **mkwargs)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class WorkerProcess:
    def __init__(self, cls, *args, env: dict[str, str] | None = None, **kwargs):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, cls, args, kwargs, env or {}), daemon=True)
        self.proc.start()
        self._answer(f"starting {cls.__name__}")

    def _answer(self, what: str):
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"worker process failed {what}:\n{value}")
        return value

    def call(self, method: str, *args, **kwargs):
        """Run ``method`` in the worker; returns its result (picklable) or raises with its traceback."""
        self.send(method, *args, **kwargs)
        return self.result(method)

    def send(self, method: str, *args, **kwargs) -> None:
        """Start ``method`` without waiting (collectives need all members called at once)."""
        self.conn.send((method, args, kwargs))

    def result(self, method: str = "call"):
        return self._answer(method)

    def close(self, timeout_s: float = 30.0) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
