"""``aurora-rl report RUN... --data DIR``: the HTML report (table, verdicts, curves, overlays) of any runs."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="the HTML report of runs: results table, verdicts, curves, mask overlays")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders (runs/<name>, evaluated) or evaluation folders, in recipe order: each "
                        "stage is compared with the one before it")
    p.add_argument("--data", required=True, help="the dataset the runs were evaluated on (frames for the overlays)")
    p.add_argument("--names", default=None, help="stage names, comma-separated (default: the folders' names)")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.set_defaults(handler=run_report)


def run_report(args) -> int:
    import sys
    from pathlib import Path

    from aurora_rl.report import build_report, check_report_links
    from aurora_rl.report.eval_outputs import ReportError
    from aurora_rl.report.run_stages import stage_of

    names = args.names.split(",") if args.names else [None] * len(args.runs)
    if len(names) != len(args.runs):
        print(f"aurora-rl report: {len(names)} names for {len(args.runs)} runs", file=sys.stderr)
        return 2
    try:
        stages = [stage_of(run, name) for run, name in zip(args.runs, names)]
        out = Path(args.out)
        index = build_report(Path.cwd(), stages, Path(args.data), out)
    except (ReportError, ValueError) as e:
        print(f"aurora-rl report: {e}", file=sys.stderr)
        return 1
    broken = check_report_links(index)
    if broken:
        print(f"aurora-rl report: the page links to missing files: {broken}", file=sys.stderr)
        return 1
    for stage in stages:
        print(f"  {stage.name}: {stage.eval_dir}" + (f", {len(stage.metrics_files)} training log" if stage.metrics_files
                                                      else ""))
    print(f"report: {index}")
    return 0
