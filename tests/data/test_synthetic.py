import hashlib
import time
from collections import Counter

import numpy as np
import pytest

from aurora_rl.cli import main
from aurora_rl.data import RefAVSDataset, load_scene_facts
from aurora_rl.data.audio_features import kaldi_fbank
from aurora_rl.data.refavs_layout import read_metadata
from aurora_rl.data.stats import compute_stats
from aurora_rl.data.synthetic import CLASSES, SEEN_CLASSES, UNSEEN_CLASSES, SynthConfig, generate_benchmark, synthetic_words
from aurora_rl.data.synthetic.audio_synth import synthesize_audio
from aurora_rl.data.synthetic.scene import sample_scene
from aurora_rl.data.synthetic.writer import _pick_expressions, split_counts
from aurora_rl.data.validate import validate_refavs

SEEN = {c.name for c in SEEN_CLASSES}
UNSEEN = {c.name for c in UNSEEN_CLASSES}


@pytest.fixture
def synth(synthetic_root):
    """The session's 40-video synthetic benchmark (tests/conftest.py); read-only."""
    return synthetic_root


def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    generate_benchmark(tmp_path / "a", videos=8, seed=11)
    generate_benchmark(tmp_path / "b", videos=8, seed=11)
    generate_benchmark(tmp_path / "c", videos=8, seed=12)
    a = digest(tmp_path / "a")
    assert len(a) > 8 * 20 and a == digest(tmp_path / "b")
    assert a["metadata.csv"] != digest(tmp_path / "c")["metadata.csv"]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    generate_benchmark(tmp_path, videos=5, seed=0)
    with pytest.raises(FileExistsError):
        generate_benchmark(tmp_path, videos=5, seed=0)
    generate_benchmark(tmp_path, videos=6, seed=1, overwrite=True)
    assert len({r.vid for r in read_metadata(tmp_path)}) == 6


def test_split_counts_are_proportional():
    assert split_counts(200, SynthConfig().split_fractions) == {"train": 140, "val": 15, "test_s": 15, "test_u": 15, "test_n": 15}
    assert split_counts(5, SynthConfig().split_fractions) == {"train": 1, "val": 1, "test_s": 1, "test_u": 1, "test_n": 1}


def test_generated_set_passes_validation(synth):
    report = validate_refavs(synth)
    assert report.problems == [] and report.rows > 40


def test_facts_cover_every_row_and_follow_the_split_rules(synth):
    rows = read_metadata(synth)
    facts = load_scene_facts(synth)
    assert set(facts) == {r.uid for r in rows}
    for r in rows:
        f = facts[r.uid]
        assert (f["split"], f["fid"], f["expression"]) == (r.split, r.fid, r.exp)
        classes = {o["class"] for o in f["objects"]}
        if r.split == "test_u":
            assert f["target_class"] in UNSEEN and len(classes & UNSEEN) == 1
        else:
            assert classes <= SEEN
        if r.split == "test_n":
            assert f["expression_kind"] == "null"
        if f["expression_kind"] == "null":
            assert f["target_class"] is None and f["null_reason"] in ("absent_class", "absent_color", "absent_pair", "no_sound")
            if f["null_reason"] == "no_sound":
                assert not any(o["sounds"] for o in f["objects"])
        else:
            assert f["objects"][f["target_index"]]["class"] == f["target_class"]
        for o in f["objects"]:
            assert o["position"] in ("left", "center", "right") and (o["onset_frame"] is not None) == o["sounds"]


def test_unseen_distractors_are_named_by_step_1_and_never_referred_to(tmp_path, capsys):
    from aurora_rl.prompts.scene_cot import scene_cot

    assert main(["data", "synth", "--out", str(tmp_path), "--videos", "30", "--seed", "3",
                 "--unseen-distractors", "1"]) == 0
    assert validate_refavs(tmp_path).problems == []
    facts = load_scene_facts(tmp_path)
    for f in facts.values():
        unseen = [o for o in f["objects"] if o["class"] in UNSEEN]
        assert len(unseen) == 1  # every video has one unseen object, test_u's as before
        if f["split"] == "test_u":
            assert f["target_class"] == unseen[0]["class"]
        else:
            assert f["target_class"] is None or f["target_class"] in SEEN  # no row refers to the distractor
            step1 = scene_cot(f).answer.split(" step 2 ")[0]
            assert f"{unseen[0]['color']} {unseen[0]['class']}" in step1
    assert {f["split"] for f in facts.values()} == {"train", "val", "test_s", "test_u", "test_n"}
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--unseen-distractors", "1.5"]) == 2
    assert "--unseen-distractors in [0, 1]" in capsys.readouterr().err


def test_masks_follow_the_target_described_by_the_facts(synth):
    ds = RefAVSDataset(synth, "train", mask_size=64)
    for i in range(0, len(ds), 7):
        s = ds[i]
        if s.is_null:
            assert s.masks.sum() == 0
            continue
        target = s.facts["objects"][s.facts["target_index"]]
        for t in (0, 9):
            ys, xs = np.nonzero(s.masks[t])
            cx, cy = target["centers"][t]
            assert abs(xs.mean() - cx) < 2.5 and abs(ys.mean() - cy) < 2.5


def test_vocabulary_covers_expressions_and_facts(synth):
    words = set(synthetic_words())
    assert all(w == w.lower() and " " not in w for w in words)
    for f in load_scene_facts(synth).values():
        text = f["expression"]
        assert text.endswith(" .") and "  " not in text
        assert set(text.split()) <= words, text
        for o in f["objects"]:
            assert {o[k] for k in ("class", "color", "position", "shape", "texture", "pitch", "rhythm", "timbre")} <= words
    assert set(CLASSES) <= words and len(words) < 120


def test_stats_command_shows_classes_splits_and_kinds(synth, capsys):
    stats = compute_stats(synth)
    rows = read_metadata(synth)
    assert sum(v["rows"] for v in stats["splits"].values()) == len(rows)
    assert stats["splits"]["test_n"]["videos"] == split_counts(40, SynthConfig().split_fractions)["test_n"]
    assert main(["data", "stats", str(synth)]) == 0
    out = capsys.readouterr().out
    for word in ("split", "expression kind", "target class", "audio_visual", "visual", "null", "test_u", "(none)"):
        assert word in out
    assert any(name in out for name in UNSEEN)


def sample_rows(n_scenes, split="train"):
    """(scene, expression) pairs straight from the sampler, without writing files."""
    out = []
    for i in range(n_scenes):
        rng = np.random.default_rng([99, i])
        scene = sample_scene(rng, SEEN_CLASSES, size=64, num_frames=10)
        out += [(scene, e) for e in _pick_expressions(rng, scene, split, SynthConfig(), None)]
    return out


def test_audio_dependent_expressions_defeat_an_audio_blind_guess():
    rows = sample_rows(1500)
    kinds = Counter(e.kind for _, e in rows)
    assert kinds["audio"] > 500 and kinds["audio_visual"] > 200
    templates = {e.template for _, e in rows if e.kind in ("audio", "audio_visual")}
    assert len(templates) == 8
    for template in sorted(templates):
        subset = [(s, e) for s, e in rows if e.template == template]
        # the best fixed rule that reads the text but not the audio: "take the k-th object from the
        # left" (it knows that "left of" never means the rightmost object)
        for rank in range(3):
            hits = sum(1 for s, e in subset if rank < len(s.objects) and sorted(s.objects, key=lambda o: o.column)[rank].index == e.target)
            assert hits / len(subset) < 0.6, (template, rank, hits / len(subset))
        # nor does the target's class or colour give the answer away
        for attr in ("color", "cls"):
            top = Counter(getattr(s.objects[e.target], attr) for s, e in subset).most_common(1)[0][1]
            assert top / len(subset) < 0.35, (template, attr)


def test_audio_carries_the_sounding_class_and_its_onset():
    for i in range(40):
        rng = np.random.default_rng([7, i])
        scene = sample_scene(rng, SEEN_CLASSES, size=64, num_frames=10, num_sounding=1)
        obj = scene.sounding()[0]
        if obj.onset_frame >= 2:
            break
    audio = synthesize_audio(scene, 2.0, 16000, np.random.default_rng(0))
    fb = kaldi_fbank(audio, num_mel_bins=128)  # 100 feature frames per second, 20 per video frame
    onset = obj.onset_frame * 20
    before, after = fb[: onset - 3].mean(0), fb[onset + 3 :].mean(0)
    assert (after - before).max() > 5.0  # the source switches on at its onset frame
    mel = lambda hz: 1127 * np.log1p(hz / 700)  # noqa: E731
    centres = mel(20) + (np.arange(128) + 1) * (mel(8000) - mel(20)) / 129
    heard = centres[int(np.argmax(after - before))]
    nearest = min(CLASSES.values(), key=lambda c: abs(mel(c.f0) - heard))
    assert nearest.name == obj.cls.name


def test_two_hundred_videos_generate_fast_and_validate(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["data", "synth", "--out", str(tmp_path), "--videos", "200", "--seed", "0"]) == 0
    elapsed = time.perf_counter() - start
    assert elapsed < 45, f"generation took {elapsed:.1f} s"
    assert "200 videos" in capsys.readouterr().out
    assert main(["data", "validate", str(tmp_path)]) == 0
    assert main(["data", "synth", "--out", str(tmp_path), "--videos", "3"]) == 2  # exists, no --overwrite
