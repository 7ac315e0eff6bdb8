"""``aurora-rl data validate|synth|stats``: check a dataset, write the synthetic benchmark, count."""

from __future__ import annotations

import sys


def register(sub) -> None:
    parser = sub.add_parser("data", help="validate datasets, generate the synthetic benchmark, show counts")
    cmds = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    validate = cmds.add_parser("validate", help="check every row and file; list all problems (exit 1 if any)")
    validate.add_argument("dir", help="dataset folder")
    validate.add_argument(
        "--layout", choices=["refavs", "avsbench-s4", "avsbench-ms3"], default=None,
        help="default: detected from the metadata file present",
    )
    validate.set_defaults(handler=validate_command)

    synth = cmds.add_parser("synth", help="write a synthetic benchmark in the Ref-AVS layout")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--videos", type=int, default=200, help="number of videos (default 200)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--frame-size", type=int, default=64, help="frame width and height in pixels (default 64)")
    synth.add_argument("--audio-seconds", type=float, default=2.0, help="clip length in seconds (default 2)")
    synth.add_argument("--unseen-distractors", type=float, default=0.0, metavar="FRACTION",
                       help="share of videos outside test_u given one unseen-class object that no expression "
                            "refers to (default 0: unseen classes only in test_u)")
    synth.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    synth.set_defaults(handler=synth_command)

    stats = cmds.add_parser("stats", help="counts by split, expression kind and class")
    stats.add_argument("dir", help="dataset folder (Ref-AVS layout)")
    stats.set_defaults(handler=stats_command)


def validate_command(args) -> int:
    from aurora_rl.data.validate import validate_dataset

    report = validate_dataset(args.dir, args.layout)
    scope = f"{report.layout}, {report.rows} rows, {report.files_checked} files checked"
    for note in report.notes:
        print(f"{args.dir}: {note}")
    if report.problems:
        print(f"{args.dir}: {len(report.problems)} problem(s) ({scope}):")
        for p in report.problems:
            print(f"  {p}")
        return 1
    print(f"{args.dir}: OK ({scope})")
    return 0


def synth_command(args) -> int:
    from aurora_rl.data.synthetic import SynthConfig, generate_benchmark

    if args.videos < 1 or args.frame_size < 32 or args.audio_seconds <= 0 or not 0 <= args.unseen_distractors <= 1:
        print("aurora-rl data synth: need --videos >= 1, --frame-size >= 32, --audio-seconds > 0, "
              "--unseen-distractors in [0, 1]", file=sys.stderr)
        return 2
    cfg = SynthConfig(frame_size=args.frame_size, audio_seconds=args.audio_seconds,
                      unseen_distractor_fraction=args.unseen_distractors)
    try:
        summary = generate_benchmark(args.out, args.videos, args.seed, cfg, overwrite=args.overwrite)
    except FileExistsError as e:
        print(f"aurora-rl data synth: {e}", file=sys.stderr)
        return 2
    splits = ", ".join(f"{s} {n}" for s, n in summary["splits"].items())
    print(f"{args.out}: {summary['videos']} videos, {summary['rows']} rows ({splits})")
    return 0


def stats_command(args) -> int:
    from aurora_rl.data.errors import DataError
    from aurora_rl.data.stats import compute_stats, format_stats

    try:
        print(format_stats(compute_stats(args.dir)), end="")
    except DataError as e:
        print(f"aurora-rl data stats: {e}", file=sys.stderr)
        return 1
    return 0
