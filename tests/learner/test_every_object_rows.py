"""The data mix in the SFT stages (`mix.every_object_share`, `mix.skip_unasked_scenes`: aurora_rl/data/mix.py)
and the teacher's vocabulary check."""

from __future__ import annotations

from collections import Counter

import pytest

from aurora_rl.config.schema import DataConfig, MixConfig, RunConfig, SFTConfig
from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.mix import unasked_scene_uids
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.data.scene_facts import load_scene_facts
from aurora_rl.data.synthetic import UNSEEN_CLASSES
from aurora_rl.data.synthetic.writer import SynthConfig, generate_benchmark
from aurora_rl.model.tokenizer import build_word_tokenizer
from aurora_rl.prompts.answer_format import build_prompt, parse_answer
from aurora_rl.prompts.scene_cot import COT_WORDS, EVERY_OBJECT, POSITION_ORDER, list_cot
from learner.sft_data import SFTBatcher, check_teacher_vocabulary
from learner.sft_job import build_examples

UNSEEN = {c.name for c in UNSEEN_CLASSES}


def test_list_cot_names_every_object_left_to_right_and_segments_nothing():
    objects = [{"class": "siren", "color": "red", "position": "right", "sounds": True, "onset_frame": 3, "index": 0},
               {"class": "piano", "color": "blue", "position": "left", "sounds": False, "onset_frame": None,
                "index": 1}]
    assert list_cot({"objects": objects}) == (
        "step 1 : a blue piano on the left , a red siren on the right . step 2 : the siren sounds from frame 3 . "
        "step 3 : the reference asks for every object , which is the piano on the left , the siren on the right . "
        "step 4 : the target is piano , siren .")
    assert parse_answer(list_cot({"objects": objects})).seg_count == 0


@pytest.fixture(scope="module")
def distractor_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distractors")
    generate_benchmark(root, videos=30, seed=1, cfg=SynthConfig(unseen_distractor_fraction=1.0))
    return root


def config(root, share: float) -> SFTConfig:
    return SFTConfig(stage="sft", run=RunConfig(seed=0), data=DataConfig(root=str(root)),
                     mix=MixConfig(every_object_share=share), teacher_path="unused")


def test_every_object_rows_are_added_on_distinct_videos_and_name_the_unseen_distractor(distractor_root):
    plain = build_examples(config(distractor_root, 0.0))
    examples = build_examples(config(distractor_root, 0.25))
    assert examples[: len(plain)] == plain  # the referring rows are unchanged, the new ones come after
    extra = examples[len(plain):]
    assert len(extra) == round(0.25 * len(plain))
    rows = [r for r in layout.read_metadata(distractor_root) if r.split == "train"]
    videos = [rows[e.dataset_index].vid for e in extra]
    assert len(set(videos)) == len(videos) == len(extra)  # fewer rows than videos: no video twice
    facts = load_scene_facts(distractor_root)
    for e in extra:
        assert e.expression == EVERY_OBJECT and not e.segment and e.target_class is None
        objects = facts[rows[e.dataset_index].uid]["objects"]
        unseen = [o["class"] for o in objects if o["class"] in UNSEEN]
        assert len(unseen) == 1 and f"the {unseen[0]} " in e.answer  # the distractor is named in the answer's form
        in_order = sorted(objects, key=lambda o: POSITION_ORDER[o["position"]])
        assert e.answer.endswith(f"step 4 : the target is {' , '.join(o['class'] for o in in_order)} .")
    more = build_examples(config(distractor_root, 1.0))[len(plain):]  # more rows than videos: each once a round
    counts = Counter(rows[e.dataset_index].vid for e in more)
    assert len(more) == len(plain) and set(counts) == {r.vid for r in rows}
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.fixture(scope="module")
def half_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("half")
    generate_benchmark(root, videos=30, seed=2, cfg=SynthConfig(unseen_distractor_fraction=0.5))
    return root


def test_skip_unasked_scenes_keeps_their_referring_rows_out_and_their_every_object_rows_in(half_root):
    """mix.skip_unasked_scenes: no referring row shows an unseen-class object (one that no row asks
    for), every other referring row stays as it was, and each row left out asks "every object ."
    instead, naming the unseen object; the share's rows come on top."""
    root = half_root
    rows = [r for r in layout.read_metadata(root) if r.split == "train"]
    facts = load_scene_facts(root)
    shows_unseen = {r.uid for r in rows if any(o["class"] in UNSEEN for o in facts[r.uid]["objects"])}
    assert 0 < len(shows_unseen) < len(rows)
    plain = build_examples(config(root, 0.0))
    cfg = config(root, 1.0)
    cfg.mix.skip_unasked_scenes = True
    examples = build_examples(cfg)
    referring = [e for e in examples if e.expression is None]
    assert [e.uid for e in referring] == [e.uid for e in plain if e.uid not in shows_unseen]
    listing = [e for e in examples if e.expression == EVERY_OBJECT]
    instead = [e for e in listing if e.uid.removesuffix("/every_object") in shows_unseen]
    assert sorted(rows[e.dataset_index].uid for e in instead) == sorted(shows_unseen)  # one per row left out
    assert all(any(f"the {u} " in e.answer for u in UNSEEN) and not e.segment for e in instead)
    assert len(listing) - len(instead) == len(referring)  # the share counts the referring rows kept
    assert unasked_scene_uids([r.uid for r in rows], facts) == shows_unseen
    with pytest.raises(ValueError, match=r"needs the scene facts of every training row; 1 lack them \(e.g. nope"):
        unasked_scene_uids([rows[0].uid, "nope"], facts)


def test_batches_prompt_every_object_and_leave_its_masks_out_of_the_loss(distractor_root):
    examples = build_examples(config(distractor_root, 1.0))
    words = set(COT_WORDS) | {w for e in examples for w in (e.answer + " " + build_prompt(EVERY_OBJECT)).split()}
    tokenizer = build_word_tokenizer(words | {w for r in layout.read_metadata(distractor_root) for w in r.exp.split()})
    clips = RefAVSDataset(distractor_root, "train", mask_size=16, image_size=16)
    batcher = SFTBatcher(examples, clips, tokenizer, batch_size=16, world_size=1, rank=0, seed=0)  # both kinds
    batch = batcher.batch(0, 0)
    listing = [i for i, uid in enumerate(batch["uids"]) if uid.endswith("/every_object")]
    referring = [i for i in range(len(batch["uids"])) if i not in listing]
    assert listing and referring
    every = tokenizer(build_prompt(EVERY_OBJECT), add_special_tokens=False).input_ids
    assert all(batch["student"].prompt_ids[i] == every for i in listing)
    assert not batch["mask_valid"][listing].any()
    assert batch["mask_valid"][referring].any()  # the referring rows' masks still count
    assert all(batch["student"].prompt_ids[i] != every for i in referring)


def test_a_teacher_with_another_vocabulary_is_refused():
    ours = build_word_tokenizer(["drum", "bell"])
    check_teacher_vocabulary(build_word_tokenizer(["bell", "drum"]), ours, "t")  # same words: same ids
    with pytest.raises(ValueError, match=r"the teacher t has another vocabulary than the student \(every\)"):
        check_teacher_vocabulary(build_word_tokenizer(["drum", "bell", "every"]), ours, "t")


def test_a_batch_without_seg_still_gives_every_trainable_parameter_a_gradient():
    """Data-parallel ranks reduce the same gradients (ZeRO-2 over gloo aborts otherwise): a rank
    whose rows are all "every object ." rows (no [SEG]) must still reach the projector and SAM."""
    import torch

    from aurora_rl.config.schema import SFTLossConfig
    from aurora_rl.model.sft_loss import sft_loss
    from learner.deepspeed_config import with_every_parameter
    from tests.model.tiny_policy import make_inputs, make_policy

    policy, tok = make_policy()
    policy.eval()  # no LoRA dropout: both passes compute the same function
    inputs = make_inputs(tok, batch=2)
    seg = policy.ids.seg
    inputs.answer_ids = [[t for t in ids if t != seg] for ids in inputs.answer_ids]
    gt = torch.zeros(2, inputs.frames.shape[1], 64, 64)
    valid = torch.zeros(2, inputs.frames.shape[1], dtype=torch.bool)

    def grads(touch: bool) -> dict:
        policy.zero_grad(set_to_none=True)
        loss, _ = sft_loss(policy(inputs), gt, valid, SFTLossConfig(distill=0.0))
        (with_every_parameter(loss, policy) if touch else loss).backward()
        return {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}

    without = grads(touch=False)
    assert any(g is None for n, g in without.items() if n.startswith("projector"))  # the failure it prevents
    touched = grads(touch=True)
    assert all(g is not None for g in touched.values())
    for n, g in touched.items():  # the value is unchanged: what the rows reached gets the same gradient
        if without[n] is not None:
            assert torch.allclose(g, without[n])
