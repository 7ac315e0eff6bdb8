"""``aurora-rl cot generate``: a served teacher model writes chain-of-thought for a dataset split.

The teacher is any aurora_rl checkpoint (multimodal prompts go to vLLM as ``prompt_embeds``),
run by Ray actors over the split; every answer is validated like any CoT source (four steps,
a target, [SEG], length) and the accepted ones are written as a CoT JSONL that
``cot.source: jsonl`` reads.
"""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("cot", help="chain-of-thought data")
    cmds = parser.add_subparsers(dest="cot_command", metavar="ACTION", required=True)
    gen = cmds.add_parser("generate", help="a teacher checkpoint writes CoT for a split (vLLM on Ray actors)")
    gen.add_argument("--teacher", required=True, help="aurora_rl checkpoint folder of the teacher")
    gen.add_argument("--data", required=True, help="dataset folder (Ref-AVS layout)")
    gen.add_argument("--split", default="train")
    gen.add_argument("--out", required=True, help="the CoT JSONL to write")
    gen.add_argument("--actors", type=int, default=1)
    gen.add_argument("--max-samples", type=int, default=None)
    gen.add_argument("--max-tokens", type=int, default=150)
    gen.set_defaults(handler=generate_cot)


def generate_cot(args) -> int:
    from pathlib import Path

    from actors.eval_pool import EvalPool
    from aurora_rl.config.schema import ServicesConfig
    from aurora_rl.data.refavs_dataset import RefAVSDataset
    from aurora_rl.model.checkpoint import data_config_for
    from aurora_rl.prompts.answer_format import CoTEntry, parse_answer
    from aurora_rl.prompts.cot_source import CoTReport, check_entry, write_cot_jsonl
    from aurora_rl.services import run_services

    data = data_config_for(args.teacher, args.data, max_samples=args.max_samples)
    n = len(RefAVSDataset.from_config(data, args.split))
    with run_services(ServicesConfig(), need_redis=False):
        with EvalPool(args.teacher, data, Path(args.out).resolve().parent, args.actors, 1.0, args.max_tokens,
                      name=".cot-worker", label="cot") as pool:
            # only the text is kept: the masks of each chunk are dropped as it arrives
            preds = [{"uid": p["uid"], "row": p["row"], "text": p["text"]}
                     for part in pool.stream(args.split, range(n), print, "cot") for p in part]
    report = CoTReport()
    accepted = []
    for pred in preds:
        entry = CoTEntry(pred["uid"], pred["text"], parse_answer(pred["text"]).target_class, pred["row"])
        if check_entry(entry, args.max_tokens, lambda s: len(s.split()), report):
            accepted.append(entry)
    write_cot_jsonl(accepted, args.out)
    print(report.summary())
    print(f"wrote {len(accepted)} CoT entries to {args.out}")
    return 0
