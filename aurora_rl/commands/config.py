"""``aurora-rl config show FILE [key.sub=value ...]``: print the resolved, validated config."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("config", help="inspect stage configs")
    cmds = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cmds.add_parser("show", help="print the resolved config (inherit chain and overrides applied)")
    show.add_argument("file", help="a YAML config under configs/")
    show.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides, validated like the file")
    show.set_defaults(handler=show_config)


def show_config(args) -> int:
    from aurora_rl.config import dump_yaml, load_config

    print(dump_yaml(load_config(args.file, args.overrides)), end="")
    return 0
