"""``aurora-rl cot generate``: a teacher writes chain-of-thought for a dataset split.

The teacher is an aurora_rl checkpoint (``--teacher``: multimodal prompts go to vLLM as
``prompt_embeds``, run by Ray actors over the split) or any model served behind an
OpenAI-compatible endpoint (``--endpoint``: ``vllm serve`` of a large multimodal model; frames go
as images, see aurora_rl/cot_endpoint.py). Every answer is validated like any CoT source
(four steps, a target, [SEG], length) and the accepted ones are written as a CoT JSONL that
``cot.source: jsonl`` (stage 1) and ``corrector.source: jsonl`` (stage 2) read.
"""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("cot", help="chain-of-thought data")
    cmds = parser.add_subparsers(dest="cot_command", metavar="ACTION", required=True)
    gen = cmds.add_parser("generate", help="a teacher (checkpoint or served endpoint) writes CoT for a split")
    who = gen.add_mutually_exclusive_group(required=True)
    who.add_argument("--teacher", help="aurora_rl checkpoint folder of the teacher (vLLM on Ray actors)")
    who.add_argument("--endpoint", help="base URL of an OpenAI-compatible server, e.g. http://10.0.0.5:8000/v1")
    gen.add_argument("--data", required=True, help="dataset folder (Ref-AVS layout)")
    gen.add_argument("--split", default="train")
    gen.add_argument("--out", required=True, help="the CoT JSONL to write (an endpoint run appends and resumes)")
    gen.add_argument("--actors", type=int, default=1, help="--teacher: Ray actors")
    gen.add_argument("--gpus-per-actor", type=float, default=0.0, help="--teacher: GPUs each actor asks Ray for")
    gen.add_argument("--max-samples", type=int, default=None)
    gen.add_argument("--max-tokens", type=int, default=150, help="longest accepted CoT, in words")
    served = gen.add_argument_group("--endpoint options")
    served.add_argument("--model", help="the served model's name (required with --endpoint)")
    served.add_argument("--frames", type=int, default=4, help="frames sent per clip as images (1-10)")
    served.add_argument("--audio", action="store_true", help="also send the soundtrack (models that take audio)")
    served.add_argument("--text-answers", action="store_true",
                        help="ask for the four-step text instead of JSON under response_format")
    served.add_argument("--retries", type=int, default=2, help="re-asks of a malformed answer")
    served.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    served.add_argument("--answer-tokens", type=int, default=400, help="the teacher's token budget per answer")
    served.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key, if the server wants one")
    gen.set_defaults(handler=generate_cot)


def generate_cot(args) -> int:
    if args.endpoint:
        return generate_from_endpoint(args)
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
                      name=".cot-worker", label="cot", gpus_per_actor=args.gpus_per_actor) as pool:
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


def generate_from_endpoint(args) -> int:
    from pathlib import Path

    from aurora_rl.cot_endpoint import EndpointError, EndpointTeacher, failed_path, generate_endpoint_cot
    from aurora_rl.data import refavs_layout as layout

    if not args.model:
        print("cot generate: --endpoint needs --model (the served model's name)")
        return 2
    if not 1 <= args.frames <= layout.NUM_FRAMES:
        print(f"cot generate: --frames must be in 1..{layout.NUM_FRAMES}, got {args.frames}")
        return 2
    if args.retries < 0 or args.concurrency < 1:
        print("cot generate: --retries must be >= 0 and --concurrency >= 1")
        return 2
    rows = [r for r in layout.read_metadata(Path(args.data)) if r.split == args.split][: args.max_samples]
    teacher = EndpointTeacher(args.endpoint, args.model, frames=args.frames, send_audio=args.audio,
                              structured=not args.text_answers, retries=args.retries, max_tokens=args.answer_tokens,
                              max_words=args.max_tokens, concurrency=args.concurrency, api_key_env=args.api_key_env)
    print(f"[cot] {len(rows)} rows of {args.split} -> {args.model} at {args.endpoint}", flush=True)
    try:
        report = generate_endpoint_cot(teacher, args.data, rows, args.out, log=lambda line: print(line, flush=True))
    except EndpointError as e:
        print(f"cot generate: {e}")
        return 1
    print(report.summary())
    print(f"CoT in {args.out}; failures with their reasons in {failed_path(Path(args.out))}")
    return 0
