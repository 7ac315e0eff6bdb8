"""The ``aurora-rl`` command. Each command group lives in ``aurora_rl/commands/<group>.py``
and registers its subcommands; heavy imports (torch, ray, vllm) happen inside the handlers so
that ``aurora-rl config show`` answers instantly."""

from __future__ import annotations

import argparse
import importlib
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
