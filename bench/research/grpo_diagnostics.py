"""Why does a GRPO run move held-out J the way it does? Four checks on finished runs.

    # a random step as large as GRPO's: is GRPO's direction better or worse than chance on held-out?
    .venv/bin/python bench/research/grpo_diagnostics.py random-step --start runs/demo/runs/tiny-reflect/checkpoint \
        --moved runs/grpo_seeds/seed0/checkpoint --data runs/demo/data --seeds 0 1 2 --out runs/random_step

    # does step 3 of an answer pick the object its own step 1 describes? (synthetic benchmark)
    .venv/bin/python bench/research/grpo_diagnostics.py consistency --data runs/demo/data \
        runs/grpo_seeds/eval/start/samples.jsonl runs/grpo_seeds/eval/seed0/samples.jsonl

    # does step 3 give the position of the class it names? which side do wrong picks fall on?
    .venv/bin/python bench/research/grpo_diagnostics.py positions --data runs/demo/data \
        runs/grpo_seeds/eval/start/samples.jsonl runs/grpo_seeds/eval/seed0/samples.jsonl

    # which expressions does class accuracy come from, and does step 1 see the target's class?
    .venv/bin/python bench/research/grpo_diagnostics.py classes --data runs/demo/data \
        runs/grpo_seeds/eval/start/samples.jsonl runs/grpo_seeds/eval/seed0/samples.jsonl

random-step writes copies of --start in which every tensor has moved as far (L2) as --moved moved
it, in a random direction, and evaluates them greedily on test_s / test_u like bench/research/grpo_seeds.py.

consistency reads evaluation samples (samples.jsonl) of visual expressions. From the answer's own
step 1 it finds the object the expression names (by colour, class and position words). Then it
checks whether step 3 names that object's position, and whether the mask hit the target
(IoU > 0.5). Where step 3 follows step 1 and step 1 is right, the mask hits. A model that reads
the scene right but does not look its answer up fails there.

positions reads the same samples and asks where step 3 (of the last attempt) puts the target: among
the answers whose pick names the target's class, how often the position is the target's too (the
class -> position lookup of step 3), and, over all answers that pick an object at a wrong
position, which side they pick. A model that cannot look a position up falls back on a side; a run
that moves that side moves J on a split whose targets sit more often elsewhere.

classes reads the same samples of every non-null expression and gives, per split and template,
the class accuracy and how often step 1 names the target's class at the target's position ("sees
it"). Class accuracy below "sees it" is lost to the lookup; "sees it" below 1 is lost to perception.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from aurora_rl.pipeline.main_job import EVAL_MAX_NEW_TOKENS
from aurora_rl.prompts.answer_format import parse_answer
from aurora_rl.prompts.scene_cot import WHERE

POSITION_OF = {phrase: position for position, phrase in WHERE.items()}
_OBJECT = re.compile(r"an? (\S+) (\S+) (" + "|".join(WHERE.values()) + r")")
_PICK = re.compile(r"which is the (\S+) (" + "|".join(WHERE.values()) + r")")


def random_step_weights(before: dict, after: dict, seed: int) -> dict:
    """``before`` with every float tensor moved as far (L2) as ``after`` moved it, in a random direction."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, value in before.items():
        if not value.is_floating_point():
            weights[name] = value
            continue
        distance = (after[name].float() - value.float()).norm()
        noise = torch.randn(value.shape, generator=gen)
        weights[name] = (value.float() + noise * (distance / noise.norm().clamp(min=1e-12))).to(value.dtype).contiguous()
    return weights


def random_step(args) -> int:
    from safetensors.torch import load_file, save_file

    from actors.eval_pool import evaluate_checkpoint
    from aurora_rl.config.schema import MetricsConfig, ServicesConfig
    from aurora_rl.model.checkpoint import data_config_for
    from aurora_rl.services import run_services

    start, moved, out = Path(args.start), Path(args.moved), Path(args.out).resolve()
    before = load_file(start / "policy.safetensors")
    after = load_file(moved / "policy.safetensors")
    checkpoints = {"start": start, "GRPO": moved}
    for seed in args.seeds:
        dst = out / f"random{seed}"
        if not (dst / "policy.safetensors").exists():
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(start, dst)
            save_file(random_step_weights(before, after, seed), dst / "policy.safetensors")
        checkpoints[f"random{seed}"] = dst

    results = {}
    with run_services(ServicesConfig()):
        for name, checkpoint in checkpoints.items():
            folder = out / "eval" / name
            results[name] = (json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists()
                             else evaluate_checkpoint(str(checkpoint), data_config_for(str(checkpoint), args.data),
                                                      ["test_s", "test_u"], folder, args.eval_actors, MetricsConfig(),
                                                      args.max_new_tokens))
    rows = [("test_s", "J"), ("test_u", "J"), ("test_s", "class_acc")]
    randoms = [f"random{s}" for s in args.seeds]
    header = ["metric", "start", "GRPO", *randoms, "random mean", "random std"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for split, metric in rows:
        values = [results[name][split][metric] for name in randoms]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = [results["start"][split][metric], results["GRPO"][split][metric], *values, statistics.mean(values), std]
        lines.append(f"| {split} {metric} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    table = "\n".join(lines)
    print(table)
    (out / "random_step.md").write_text(table + "\n")
    return 0


def step1_objects(steps: dict) -> list[tuple[str, str, str]]:
    """(colour, class, position) of every object an answer's step 1 describes, in its order."""
    return [(c, k, POSITION_OF[w]) for c, k, w in _OBJECT.findall(steps.get("images", ""))]


def step3_pick(steps: dict) -> tuple[str, str] | None:
    """(class, position) of the object an answer's step 3 picks ("which is the drum in the center"), or None."""
    pick = _PICK.search(steps.get("reference", ""))
    return (pick.group(1), POSITION_OF[pick.group(2)]) if pick else None


def step3_follows_step1(text: str, expression: str, colors: set[str]) -> tuple[bool, bool]:
    """(the answer's step 1 names exactly one object the expression fits, step 3 gives its position)."""
    steps = parse_answer(text).steps
    seen = step1_objects(steps)
    words = expression.split()
    named_color = next((w for w in words if w in colors), None)
    fits = [o for o in seen if (named_color is None or o[0] == named_color) and ("object" in words or o[1] in words)]
    for phrase, position in POSITION_OF.items():
        if phrase in expression:
            fits = [o for o in fits if o[2] == position]
    pick = step3_pick(steps)
    unique = len(fits) == 1
    return unique, unique and pick is not None and pick[1] == fits[0][2]


def scene_facts_of(root: str) -> dict:
    """The synthetic benchmark's ground truth, by uid; exits with a message if ``root`` has none."""
    from aurora_rl.data.scene_facts import load_scene_facts

    facts = load_scene_facts(root)
    if not facts:
        raise SystemExit(f"{root} has no scene_facts.jsonl (a synthetic benchmark's ground truth)")
    return facts


def samples_with_facts(path: str, facts: dict):
    """(sample, its scene facts) for each evaluation sample in ``path`` the facts know."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            sample = json.loads(line)
            fact = facts.get(sample["uid"])
            if fact is not None:
                yield sample, fact


def consistency(args) -> int:
    from aurora_rl.data.synthetic.catalog import COLORS

    facts = scene_facts_of(args.data)
    colors = set(COLORS)
    lines = ["| samples | split | template | clips | step 1 names one fitting object | step 3 follows it | hit | "
             "hit and follows |", "|---|---|---|---|---|---|---|---|"]
    for path in args.samples:
        counts = defaultdict(Counter)
        for sample, fact in samples_with_facts(path, facts):
            if fact["expression_kind"] != "visual":
                continue
            unique, follows = step3_follows_step1(sample["text"], fact["expression"], colors)
            hit = sample["iou"] > 0.5
            c = counts[(fact["split"], fact["template"])]
            c.update(clips=1, unique=unique, follows=follows, hit=hit, both=hit and follows)
        for (split, template), c in sorted(counts.items()):
            n = c["clips"]
            lines.append(f"| {path} | {split} | {template} | {n} | " +
                         " | ".join(f"{c[k] / n:.2f}" for k in ("unique", "follows", "hit", "both")) + " |")
    print("\n".join(lines))
    return 0


def target_of(fact: dict) -> dict | None:
    """The scene object the expression refers to (None for a null expression)."""
    return next((o for o in fact["objects"] if o["index"] == fact.get("target_index")), None)


def step1_sees_target(text: str, fact: dict) -> bool:
    """The answer's step 1 names the target's class at the target's position."""
    target = target_of(fact)
    if target is None:
        return False
    seen = {position: k for _, k, position in step1_objects(parse_answer(text).steps)}
    return seen.get(target["position"]) == target["class"]


def classes(args) -> int:
    facts = scene_facts_of(args.data)
    lines = ["| samples | split | template | clips | class acc | step 1 sees it |", "|---|---|---|---|---|---|"]
    for path in args.samples:
        counts = defaultdict(Counter)
        for sample, fact in samples_with_facts(path, facts):
            if not fact.get("target_class"):
                continue
            c = counts[(fact["split"], fact["template"])]
            c.update(clips=1, right=sample["target_class"] == fact["target_class"],
                     sees=step1_sees_target(sample["text"], fact))
        for (split, template), c in sorted(counts.items()):
            n = c["clips"]
            lines.append(f"| {path} | {split} | {template} | {n} | {c['right'] / n:.3f} | {c['sees'] / n:.3f} |")
    print("\n".join(lines))
    return 0


def positions(args) -> int:
    facts = scene_facts_of(args.data)
    sides = list(WHERE)
    lines = ["| samples | split | targets at " + " / ".join(sides) + " | class named | its position right | "
             "wrong picks at " + " / ".join(sides) + " |", "|---|---|---|---|---|---|"]
    for path in args.samples:
        counts = defaultdict(Counter)
        for sample, fact in samples_with_facts(path, facts):
            target = target_of(fact)
            if target is None:
                continue
            c = counts[fact["split"]]
            c["at " + target["position"]] += 1
            pick = step3_pick(parse_answer(sample["text"]).steps)
            if pick is None:
                continue
            named, position = pick
            c.update(named=named == target["class"], both=named == target["class"] and position == target["position"])
            if position != target["position"]:
                c["wrong " + position] += 1
        for split, c in sorted(counts.items()):
            at = " / ".join(str(c["at " + side]) for side in sides)
            wrong = " / ".join(str(c["wrong " + side]) for side in sides)
            lines.append(f"| {path} | {split} | {at} | {c['named']} | {c['both'] / max(c['named'], 1):.3f} | {wrong} |")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rs = sub.add_parser("random-step", help="evaluate random steps as large as a GRPO run's")
    rs.add_argument("--start", required=True, help="checkpoint GRPO started from")
    rs.add_argument("--moved", required=True, help="checkpoint GRPO ended at")
    rs.add_argument("--data", required=True, help="dataset root with test_s / test_u")
    rs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rs.add_argument("--out", default="runs/random_step")
    rs.add_argument("--eval-actors", type=int, default=2)
    rs.add_argument("--max-new-tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    for name, help_text in (("consistency", "does step 3 pick the object step 1 describes?"),
                            ("classes", "class accuracy per template; does step 1 see the target's class?"),
                            ("positions", "does step 3 give the position of the class it names?")):
        cs = sub.add_parser(name, help=help_text)
        cs.add_argument("--data", required=True, help="root of the evaluated synthetic dataset (its scene_facts.jsonl)")
        cs.add_argument("samples", nargs="+", help="samples.jsonl files of evaluations")
    args = parser.parse_args()
    commands = {"random-step": random_step, "consistency": consistency, "classes": classes, "positions": positions}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
