"""The ``aurora-rl`` command. Each command group lives in ``aurora_rl/commands/<group>.py``
and registers its subcommands; heavy imports (torch, ray, vllm) happen inside the handlers so
that ``aurora-rl config show`` answers instantly."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from aurora_rl.config import ConfigError
from aurora_rl.data.errors import DataError

COMMAND_MODULES = ["config", "services", "demo", "infer", "train", "eval", "data", "cot", "sam", "jobs", "cluster"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-rl",
        description="Train audio-visual LLMs to reason about a clip and segment the referred object (AURORA on Ray).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"aurora_rl.commands.{name}").register(sub)
    return parser


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``with`` blocks unwind and stop what they started.

    Python's default action for SIGTERM ends the process on the spot: a private Redis and Ray
    node started by a job (``run_services``) would outlive it. ``ray job stop``, ``kill`` and
    schedulers send SIGTERM.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    try:
        return int(args.handler(args) or 0)
    except ConfigError as e:
        print(f"aurora-rl: config error: {e}", file=sys.stderr)
        return 2
    except (DataError, FileNotFoundError, FileExistsError) as e:
        print(f"aurora-rl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
