"""Can the tiny LLM learn to look its answer up in its own step 1? A text-only check.

The main job's answers read the scene right in step 1 and then, in step 3, name the position of
an object that step 1 does not put there (bench/research/grpo_diagnostics.py consistency). This check takes
the media out: the tiny Qwen2 of the main job (2 layers, hidden 128) gets a referring expression
and a correct step 1 as text, and learns to write step 3, the object the expression asks for and
its position. It trains on a fixed set of rows (the 4,000-video set's training split has 2,800
videos, 8,400 rows) and is scored, greedily, on fresh scenes.

Two ways to write where an object is, side by side:
- ``phrase``, the chain of thought's: "a yellow piano on the left , ..." ... "which is the piano on
  the left". After the class, "on" / "in" is one token of lookup; "left" / "right" then follows
  "on the", which every object on a side shares, and is told apart only by the class three tokens
  back.
- ``word``: "a yellow piano left , ..." ... "which is the piano left". The position is the token
  right after the class in step 1: one copy, the pattern a two-layer transformer learns first.

Unseen classes (`--unseen-distractors F`): a share F of the training scenes also holds one object
of an unseen class that no expression asks for, as `aurora-rl data synth --unseen-distractors`
writes them. The ``unseen`` rows are then fresh scenes whose expression asks for that object: can
the lookup copy a class that was never an answer? `--pretrain-steps N` first trains N steps on
rows whose answers range over every class, unseen ones included (a stand-in for a language model
that already knows the words), and then the seen-only rows as before. `--replay F` mixes into the
seen-only rows F times as many rows of another task that names every class: "name every object",
answered by step 1's classes in order, unseen ones included (a stand-in for training that keeps
answering those words outside the referring task, captioning say). `--replay-task describe` makes
those rows write step 1 itself ("describe the clip ."), for scenes drawn like the training ones,
unseen distractors included: what the chain of thought's own step 1 gives. `--replay-task where`
makes them name every object with its position, in an order of the row's own: the lookup itself,
for every class, outside the referring task. `--nonce-classes N` adds N made-up class names to the
first phase's scenes: with far more names than the catalog's, can a per-class lookup still fit?
`--tie` gives the LLM one matrix for embedding words and scoring the next one, as Qwen2.5-0.5B
has: does copying a word forward then write it, answered in training or not?

    PYTHONPATH=. .venv/bin/python bench/research/lookup_probe.py --rows 8400 --steps 3000
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from aurora_rl.data.synthetic.catalog import COLORS, POSITIONS, SEEN_CLASSES, UNSEEN_CLASSES
from aurora_rl.prompts import scene_cot

WHERE = {"phrase": scene_cot.WHERE, "word": {p: p for p in POSITIONS}}
TEMPLATES = ("class", "color", "color_class")


def scene_row(rng: random.Random, style: str, step2: bool = False, distractor_p: float = 0.0,
              target: str = "seen", nonce: tuple[str, ...] = (), position_first: bool = False) -> dict:
    """One scene of 2-3 objects (distinct classes and colours, one per column) and one expression.

    With ``step2`` the context also holds the answer's step 2 between step 1 and step 3: the
    sounding objects' classes again, by onset, as the chain of thought writes them.
    ``target``: "seen" asks for a seen-class object (a share ``distractor_p`` of the scenes also
    holds an unseen-class one); "unseen" asks for the scene's one unseen-class object; "all"
    draws the classes from every class and asks for any object; "list" draws them from every
    class and asks for all of them, in step 1's order (not a referring row: template "list");
    "where" as "list", each with its position, in a shuffled order (template "where");
    "describe" asks for step 1 itself, of a scene drawn as for "seen" (template "describe").
    ``position_first``: a referring answer gives the position before the class ("the object on the
    left , the piano ."), so that the position is looked up from the expression, not from a class
    the answer has just written.
    """
    columns = sorted(rng.sample(POSITIONS, rng.choice((2, 3))), key=POSITIONS.index)
    pool = [c.name for c in SEEN_CLASSES]
    if target in ("all", "list", "where"):  # rows over every class
        pool += [c.name for c in UNSEEN_CLASSES] + list(nonce)
    classes = rng.sample(pool, len(columns))
    unseen_slot = None
    if target == "unseen" or (distractor_p > 0 and rng.random() < distractor_p):
        unseen_slot = rng.randrange(len(columns))
        classes[unseen_slot] = rng.choice([c.name for c in UNSEEN_CLASSES])
    colors = rng.sample(sorted(COLORS), len(columns))
    objects = list(zip(colors, classes, columns))
    if target == "unseen":
        color, cls, where = objects[unseen_slot]
    else:
        color, cls, where = rng.choice([o for i, o in enumerate(objects) if i != unseen_slot])
    template = rng.choice(TEMPLATES)
    expression = {"class": f"the {cls} .", "color": f"the {color} object .",
                  "color_class": f"the {color} {cls} ."}[template]
    step1 = " , ".join(f"a {c} {k} {WHERE[style][p]}" for c, k, p in objects) + " ."
    middle = ""
    if step2:  # the sounding objects in onset order (a sample comes in random order)
        sounding = rng.sample(classes, rng.randint(0, len(classes)))
        sounds = " , ".join(f"the {k} sounds from frame {i * 3 + rng.randint(0, 2)}" for i, k in enumerate(sounding))
        middle = f" step 2 : {sounds or 'nothing sounds'} ."
    if target in ("list", "where"):  # "where": with positions, in an order of the row's own (a lookup per class)
        named = (f"the {k}" for k in classes) if target == "list" else (
            f"the {k} {WHERE[style][p]}" for _, k, p in rng.sample(objects, len(objects)))
        return {"context": f"the reference is : name every object . step 1 : {step1}{middle} step 3 : they are",
                "answer": " , ".join(named) + " .", "template": target}
    if target == "describe":
        return {"context": "the reference is : describe the clip . step 1 :", "answer": step1, "template": "describe"}
    asked = expression.rstrip(" .")
    context = (f"the reference is : {expression} step 1 : {step1}{middle} step 3 : the reference asks for {asked} ,"
               " which is")
    place = WHERE[style][where]
    answer = f"the object {place} , the {cls} ." if position_first else f"the {cls} {place} ."
    return {"context": context, "answer": answer, "template": template, "where": place}


class Vocab:
    def __init__(self, rows: list[dict]):
        words = sorted({w for r in rows for w in (r["context"] + " " + r["answer"]).split()})
        self.ids = {w: i + 1 for i, w in enumerate(words)}  # 0 pads
        self.words = {i: w for w, i in self.ids.items()}

    def encode(self, text: str) -> list[int]:
        return [self.ids[w] for w in text.split()]


def build_llm(vocab_size: int, layers: int, seed: int, hidden: int = 128, tie: bool = False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=tie, pad_token_id=0)
    return Qwen2ForCausalLM(config)


def batch(vocab: Vocab, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels that score only the answer's tokens."""
    seqs = [(vocab.encode(r["context"]), vocab.encode(r["answer"])) for r in rows]
    n = max(len(c) + len(a) for c, a in seqs)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    for i, (c, a) in enumerate(seqs):
        ids[i, :len(c) + len(a)] = torch.tensor(c + a)
        labels[i, len(c):len(c) + len(a)] = torch.tensor(a)
    return ids, labels


@torch.no_grad()
def exact_match(llm, vocab: Vocab, rows: list[dict]) -> dict[str, float]:
    """Greedy answers (as long as the true one) against the true answer, by template; and, as
    "<template> where", whether the answer gives the target's position and no other (what the mask
    follows), whatever class it names."""
    llm.eval()
    hits: dict[str, list[int]] = {t: [] for t in TEMPLATES}
    placed: dict[str, list[int]] = {t: [] for t in TEMPLATES}
    for r in rows:
        ids = torch.tensor([vocab.encode(r["context"])], device=llm.device)
        want = vocab.encode(r["answer"])
        out = llm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=len(want), do_sample=False,
                           pad_token_id=0)
        got = out[0, ids.shape[1]:].tolist()
        hits[r["template"]].append(int(got == want))
        if "where" in r:
            text = f" {' '.join(vocab.words.get(i, '?') for i in got)} "
            places = next(w.values() for w in WHERE.values() if r["where"] in w.values())
            named = {p for p in places if f" {p} " in text}
            placed[r["template"]].append(int(named == {r["where"]}))
    llm.train()
    scores = {t: sum(h) / len(h) for t, h in hits.items() if h}
    scores.update({f"{t} where": sum(h) / len(h) for t, h in placed.items() if h})
    scores["all"] = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return scores


def train_steps(llm, vocab: Vocab, rows: list[dict], steps: int, rng: random.Random, args, label: str) -> None:
    opt = torch.optim.AdamW(llm.parameters(), lr=args.lr, weight_decay=0.0)
    started = time.monotonic()
    for step in range(1, steps + 1):
        ids, labels = (t.to(llm.device) for t in batch(vocab, rng.sample(rows, args.batch)))
        loss = llm(input_ids=ids, attention_mask=(ids > 0).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.log_every == 0 or step == steps:
            rate = step / (time.monotonic() - started)
            print(f"[lookup] {label}: step {step}/{steps} loss {loss.item():.4f} | {rate:.1f} steps/s | "
                  f"ETA {(steps - step) / rate:.0f} s", flush=True)


def run(style: str, args) -> dict:
    rng = random.Random(args.seed)
    p, pretrain_steps = args.unseen_distractors, args.pretrain_steps
    first = args.position_first
    p_refer = 0.0 if args.unseen_outside_referring else p
    train = [scene_row(rng, style, args.step2, p_refer, position_first=first) for _ in range(args.rows)]
    train += [scene_row(rng, style, args.step2, p, target=args.replay_task)
              for _ in range(int(args.replay * args.rows))]
    fresh = [scene_row(rng, style, args.step2, p_refer, position_first=first) for _ in range(args.eval_rows)]
    unseen = [scene_row(rng, style, args.step2, target="unseen", position_first=first)
              for _ in range(args.eval_rows)] if p else []
    nonce = tuple(f"thing{i}" for i in range(args.nonce_classes))
    everything = [scene_row(rng, style, args.step2, target="all", nonce=nonce, position_first=first)
                  for _ in range(args.rows)] if pretrain_steps else []
    vocab = Vocab(train + fresh + unseen + everything)
    llm = build_llm(len(vocab.ids) + 1, args.layers, args.seed, args.hidden, args.tie).to(args.device)
    if pretrain_steps:
        train_steps(llm, vocab, everything, pretrain_steps, rng, args, f"{style}, every class")
    train_steps(llm, vocab, train, args.steps, rng, args, style)
    out = {"style": style, "train": exact_match(llm, vocab, train[:args.eval_rows]),  # the --replay rows come last
           "fresh": exact_match(llm, vocab, fresh)}
    if unseen:
        out["unseen"] = exact_match(llm, vocab, unseen)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8400, help="fixed training rows (fresh scenes are scored)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--eval-rows", type=int, default=600)
    ap.add_argument("--styles", nargs="+", default=list(WHERE), choices=list(WHERE))
    ap.add_argument("--step2", action="store_true", help="put step 2 (the sounding classes again) before step 3")
    ap.add_argument("--unseen-distractors", type=float, default=0.0, metavar="F",
                    help="share of training scenes with one unseen-class object never asked for; adds the unseen "
                         "rows (fresh scenes asking for it) to the table")
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="steps on rows whose answers range over every class before the seen-only rows")
    ap.add_argument("--nonce-classes", type=int, default=0, metavar="N",
                    help="the --pretrain-steps rows also draw their classes from N made-up names: with many more "
                         "names than the catalog's, a lookup by class has to be one copy for every name")
    ap.add_argument("--replay", type=float, default=0.0, metavar="F",
                    help="add F x rows of the name-every-object task (every class) to the seen-only rows")
    ap.add_argument("--replay-task", choices=["list", "where", "describe"], default="list",
                    help="what the --replay rows ask for: every object's class; every object's class and "
                         "position, in a shuffled order; or step 1 itself")
    ap.add_argument("--hidden", type=int, default=128, help="LLM width (the main job's: 128)")
    ap.add_argument("--tie", action="store_true",
                    help="one matrix embeds the words and scores the next one (tied, as in Qwen2.5-0.5B): copying "
                         "a word's embedding forward then favours that word, trained as an answer or not")
    ap.add_argument("--position-first", action="store_true",
                    help="referring answers give the position before the class: \"the object on the left , the "
                         "piano .\"")
    ap.add_argument("--unseen-outside-referring", action="store_true",
                    help="the referring rows hold no unseen-class object (only the --replay rows name them), so no "
                         "referring row teaches that an unseen object is never the answer")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(style, args) for style in args.styles]
    print(f"\n{args.rows} training rows, {args.steps} steps x {args.batch}, lr {args.lr}, {args.layers} layers; "
          f"exact step-3 answers, greedy{'; step 2 in the context' if args.step2 else ''}"
          f"{f'; unseen distractors {args.unseen_distractors}' if args.unseen_distractors else ''}"
          f"{f'; first {args.pretrain_steps} steps on every class' if args.pretrain_steps else ''}"
          f"{f' and {args.nonce_classes} made-up ones' if args.nonce_classes else ''}"
          f"{f'; {args.replay_task} rows {args.replay} x' if args.replay else ''}"
          f"{f'; hidden {args.hidden}' if args.hidden != 128 else ''}{'; tied embeddings' if args.tie else ''}"
          f"{'; position before class' if args.position_first else ''}"
          f"{'; no unseen object in referring rows' if args.unseen_outside_referring else ''}")
    print("exact answer by template, then the target's position alone (what the mask follows):")
    columns = (*TEMPLATES, "all", *(f"{t} where" for t in TEMPLATES))
    print("| where | rows | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for r in results:
        for name in ("train", "fresh", "unseen"):
            if name not in r:
                continue
            s = r[name]
            print(f"| {r['style']} | {name} | " + " | ".join(f"{s[t]:.2f}" if t in s else "-" for t in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
