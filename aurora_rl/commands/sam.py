"""``aurora-rl sam pretrain``: promptable-segmentation pretraining of the tiny SAM."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("sam", help="pretrain the tiny SAM (the stand-in for a released SAM checkpoint)")
    cmds = parser.add_subparsers(dest="sam_command", metavar="ACTION", required=True)
    pretrain = cmds.add_parser(
        "pretrain", help="train a tiny SAM from point prompts on a dataset's object masks; writes an HF SamModel "
                         "folder for model.sam.path")
    pretrain.add_argument("--data", required=True, help="dataset folder (Ref-AVS layout; its train and val splits)")
    pretrain.add_argument("--out", required=True, help="output folder (config.json, model.safetensors)")
    pretrain.add_argument("--steps", type=int, default=1000)
    pretrain.add_argument("--batch", type=int, default=32, help="object frames per step")
    pretrain.add_argument("--lr", type=float, default=1e-3)
    pretrain.add_argument("--image-size", type=int, default=64, help="SAM input size (the tiny configs' 64)")
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.set_defaults(handler=pretrain_command)


def pretrain_command(args) -> int:
    from aurora_rl.model.sam_pretrain import pretrain_tiny_sam

    pretrain_tiny_sam(args.data, args.out, image_size=args.image_size, steps=args.steps, batch=args.batch,
                      lr=args.lr, seed=args.seed)
    print(f"tiny SAM written to {args.out}: use it with model.sam.path={args.out}")
    return 0
