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
from aurora_rl.services.library_logs import quiet_driver

COMMAND_MODULES = ["config", "services", "demo", "infer", "train", "preflight", "eval", "report", "data", "cot",
                   "sam", "jobs", "cluster"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aurora-rl",
        description="Train audio-visual LLMs to reason about a clip and segment the referred object (AURORA on Ray).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"aurora_rl.commands.{name}").register(sub)
    return parser


def attach_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--opt VALUE`` as ``--opt=VALUE`` when VALUE begins with ``-`` and is no option.

    argparse reads such a value as an option and stops ("expected one argument"), yet 344 Ref-AVS
    video ids begin with ``-`` or ``--``, so a folder or uid of theirs is a natural value.
    """
    takes_value, flags = set(), set()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
            flags |= set(action.option_strings)
            if action.option_strings and action.nargs is None and action.const is None:
                takes_value |= set(action.option_strings)
    out: list[str] = []
    for token in argv:
        if out and out[-1] in takes_value and token.startswith("-") and token.split("=")[0] not in flags:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``with`` blocks unwind and stop what they started.

    Python's default action for SIGTERM ends the process on the spot: a private Redis and Ray
    node started by a job (``run_services``) would outlive it. ``ray job stop``, ``kill`` and
    schedulers send SIGTERM.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(attach_dash_values(parser, sys.argv[1:] if argv is None else argv))
    exit_on_sigterm()
    quiet_driver()
    try:
        return int(args.handler(args) or 0)
    except ConfigError as e:
        print(f"aurora-rl: config error: {e}", file=sys.stderr)
        return 2
    except (DataError, FileNotFoundError, FileExistsError, PermissionError) as e:
        print(f"aurora-rl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
