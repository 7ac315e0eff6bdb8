"""bench/research/lookup_probe.py: its rows are right by construction, and a short run scores them."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.research.lookup_probe import WHERE, run, scene_row  # noqa: E402


@pytest.mark.parametrize("style", list(WHERE))
@pytest.mark.parametrize("step2", [False, True])
def test_the_answer_is_the_object_step_1_puts_where_the_expression_points(style, step2):
    rng = random.Random(3)
    for _ in range(200):
        row = scene_row(rng, style, step2)
        expression = row["context"].split(" step 1 : ")[0].removeprefix("the reference is : the ").removesuffix(" .")
        step1 = row["context"].split(" step 1 : ")[1].split(" step ")[0].rstrip(" .").split(" , ")
        assert (" step 2 : " in row["context"]) == step2
        cls_where = row["answer"].removeprefix("the ").removesuffix(" .")
        # exactly one object of step 1 fits the expression, and the answer gives its class and place
        words = expression.split()
        fitting = [o for o in step1 if all(w in o.split() for w in words if w != "object")]
        assert len(fitting) == 1, (row, fitting)
        assert fitting[0].split(" ", 2)[2] == cls_where


def test_a_short_run_scores_train_and_fresh_rows_by_template():
    args = argparse.Namespace(seed=0, rows=40, eval_rows=9, layers=1, lr=1e-3, steps=3, batch=4, log_every=3,
                              step2=True, unseen_distractors=0.0, pretrain_steps=0, replay=0.0, replay_task="list",
                              nonce_classes=0, hidden=128, device="cpu", tie=False,
                              position_first=False, unseen_outside_referring=False)
    result = run("word", args)
    assert "unseen" not in result  # no distractors: no unseen rows
    for name in ("train", "fresh"):
        scores = result[name]
        templates = {"class", "color", "color_class"}
        assert set(scores) <= templates | {f"{t} where" for t in templates} | {"all"} and "all" in scores
        assert all(0.0 <= v <= 1.0 for v in scores.values())
        # an exact answer gives the right position, so the position alone scores at least as high
        assert all(scores[f"{t} where"] >= scores[t] for t in templates if t in scores)


def test_position_first_answers_give_the_same_object_with_its_position_before_its_class():
    for seed in range(20):  # the same draw either way: only the answer's word order differs
        usual = scene_row(random.Random(seed), "phrase")
        first = scene_row(random.Random(seed), "phrase", position_first=True)
        assert usual["context"] == first["context"] and usual["where"] == first["where"]
        cls = usual["answer"].split()[1]
        assert usual["answer"] == f"the {cls} {usual['where']} ."
        assert first["answer"] == f"the object {first['where']} , the {cls} ."


def test_unseen_rows_ask_for_the_one_unseen_object_and_seen_rows_never_do():
    from aurora_rl.data.synthetic.catalog import UNSEEN_CLASSES

    unseen = {c.name for c in UNSEEN_CLASSES}
    rng = random.Random(5)
    with_distractor = 0
    for _ in range(300):
        seen_row = scene_row(rng, "phrase", distractor_p=0.5)
        step1 = seen_row["context"].split(" step 1 : ")[1]
        with_distractor += any(f" {u} " in step1 for u in unseen)
        assert seen_row["answer"].split()[1] not in unseen
        row = scene_row(rng, "phrase", target="unseen")
        assert row["answer"].split()[1] in unseen
        assert sum(f" {u} " in row["context"].split(" step 1 : ")[1] for u in unseen) == 1
    assert 100 < with_distractor < 200


def test_pretraining_and_unseen_rows_show_in_a_short_run():
    args = argparse.Namespace(seed=0, rows=40, eval_rows=9, layers=1, lr=1e-3, steps=2, batch=4, log_every=2,
                              step2=False, unseen_distractors=0.3, pretrain_steps=2, replay=0.5, replay_task="describe",
                              nonce_classes=0, hidden=64, device="cpu", tie=True,
                              position_first=True, unseen_outside_referring=True)
    result = run("phrase", args)
    assert set(result) == {"style", "train", "fresh", "unseen"}
    assert all(0.0 <= v <= 1.0 for v in result["unseen"].values())
    args.nonce_classes, args.replay_task = 20, "where"
    assert set(run("phrase", args)) == {"style", "train", "fresh", "unseen"}


@pytest.mark.parametrize("tie", [False, True])
def test_tie_makes_one_matrix_embed_and_score_the_words(tie):
    from bench.research.lookup_probe import build_llm

    llm = build_llm(50, layers=1, seed=0, hidden=64, tie=tie)
    embed, head = llm.get_input_embeddings().weight, llm.get_output_embeddings().weight
    assert (embed.data_ptr() == head.data_ptr()) == tie
    assert sum(p.numel() for p in llm.parameters()) + (50 * 64 if tie else 0) == \
        sum(p.numel() for p in build_llm(50, layers=1, seed=0, hidden=64).parameters())


def test_list_rows_name_every_object_of_step_1_in_order():
    rng = random.Random(2)
    for _ in range(100):
        row = scene_row(rng, "phrase", target="list")
        step1 = row["context"].split(" step 1 : ")[1].split(" step 3 : ")[0].rstrip(" .").split(" , ")
        assert row["answer"] == " , ".join(f"the {o.split()[2]}" for o in step1) + " ." and row["template"] == "list"


def test_describe_rows_answer_with_step_1_of_a_scene_drawn_like_the_training_ones():
    from aurora_rl.data.synthetic.catalog import UNSEEN_CLASSES

    rng = random.Random(4)
    rows = [scene_row(rng, "phrase", distractor_p=0.5, target="describe") for _ in range(200)]
    assert all(r["context"].endswith("step 1 :") and r["answer"].startswith("a ") for r in rows)
    with_unseen = sum(any(f" {c.name} " in r["answer"] for c in UNSEEN_CLASSES) for r in rows)
    assert 60 < with_unseen < 140


def test_where_rows_name_each_object_with_its_own_position_in_an_order_of_their_own():
    rng = random.Random(6)
    reordered = 0
    for _ in range(200):
        row = scene_row(rng, "phrase", target="where")
        step1 = row["context"].split(" step 1 : ")[1].split(" step 3 : ")[0].rstrip(" .").split(" , ")
        objects = [o.split(" ", 3)[2:] for o in step1]  # [class, "on the left"]
        named = [n.removeprefix("the ").split(" ", 1) for n in row["answer"].removesuffix(" .").split(" , ")]
        assert sorted(named) == sorted(objects) and row["template"] == "where"
        reordered += named != objects
    assert 60 < reordered < 180  # 2-3 objects: most orders but not all differ from step 1's


def test_made_up_names_join_only_the_rows_over_every_class():
    nonce = tuple(f"thing{i}" for i in range(50))
    rng = random.Random(7)
    rows = {t: [scene_row(rng, "phrase", distractor_p=0.3, target=t, nonce=nonce) for _ in range(200)]
            for t in ("seen", "unseen", "all", "list")}
    made_up = {t: sum("thing" in r["context"] for r in rs) for t, rs in rows.items()}
    assert made_up["seen"] == made_up["unseen"] == 0
    assert made_up["all"] > 150 and made_up["list"] > 150  # 50 of 61 names are made up
