"""Config files load into typed objects; every kind of bad input names the file and the key."""

from __future__ import annotations

import dataclasses
import re
import typing
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aurora_rl.config import ConfigError, GRPOConfig, SFTConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "base.yaml"), ids=str)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.stage in ("sft", "reflect", "grpo", "eval")


def test_inherit_merges_mappings_and_keeps_types():
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml")
    assert isinstance(cfg, GRPOConfig)
    assert cfg.model.tiny.hidden_size == 128  # from base.yaml
    assert cfg.rollout.sampling.group_size == 3  # from grpo.yaml
    assert cfg.model.path == "runs/tiny-reflect/checkpoint"  # from grpo.yaml over the default None
    assert cfg.learner.optim.lr == pytest.approx(1e-5) and isinstance(cfg.learner.optim.lr, float)
    assert cfg.reward.num_workers == 2


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: grpo\nrollout:\n  sampling:\n    temprature: 0.7\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "rollout.sampling.temprature" in msg
    assert "did you mean 'temperature'" in msg


def test_wrong_type_names_file_and_key(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: sft\nloss:\n  distill: 0\ntrainer:\n  num_workers: two\n")
    with pytest.raises(ConfigError, match=rf"{path}: trainer.num_workers: expected an integer, got 'two'"):
        load_config(path)


def test_bool_is_not_an_integer(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: grpo\nlearner:\n  steps: true\n")
    with pytest.raises(ConfigError, match="learner.steps: expected an integer"):
        load_config(path)


def test_out_of_range_value_names_key(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: grpo\nrollout:\n  sampling:\n    top_p: 1.5\n")
    with pytest.raises(ConfigError, match=r"rollout.sampling.top_p: must be <= 1.0, got 1.5"):
        load_config(path)


def test_missing_stage_is_an_error(tmp_path):
    path = write(tmp_path, "bad.yaml", "run:\n  name: x\n")
    with pytest.raises(ConfigError, match=rf"{path}: stage: missing required value"):
        load_config(path)


def test_missing_required_path_for_a_real_backbone(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: eval\nmodel:\n  backbone: videollama2-av\n")
    with pytest.raises(ConfigError, match=rf"{path}: model.path: .*needs a local weights folder"):
        load_config(path)


def test_cross_field_check_names_key(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: sft\nloss:\n  distill: 1.0\n")
    with pytest.raises(ConfigError, match=rf"{path}: teacher_path: distillation"):
        load_config(path)


def test_error_in_parent_names_the_parent_file(tmp_path):
    write(tmp_path, "parent.yaml", "data:\n  image_size: big\n")
    child = write(tmp_path, "child.yaml", "inherit: parent.yaml\nstage: eval\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert str(tmp_path / "parent.yaml") in str(err.value)
    assert "data.image_size" in str(err.value)


def test_inherit_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "inherit: b.yaml\nstage: eval\n")
    write(tmp_path, "b.yaml", "inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_overrides_apply_and_validate():
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["rollout.sampling.group_size=8", "objective.kl_coef=0.05"])
    assert cfg.rollout.sampling.group_size == 8
    assert cfg.objective.kl_coef == pytest.approx(0.05)


def test_exponent_without_a_dot_is_a_number_in_overrides_and_files(tmp_path):
    """YAML 1.1 reads 3e-4 as a string; a float field takes it as 0.0003, and "1e-x" stays an error."""
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["learner.optim.lr=3e-4"])
    assert cfg.learner.optim.lr == pytest.approx(3e-4)
    path = tmp_path / "lr.yaml"
    path.write_text(f"inherit: {CONFIGS / 'tiny' / 'grpo.yaml'}\nlearner:\n  optim:\n    lr: 5E-5\n")
    assert load_config(path).learner.optim.lr == pytest.approx(5e-5)
    with pytest.raises(ConfigError, match="learner.optim.lr: expected a number, got '1e-x'"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["learner.optim.lr=1e-x"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("learner.stepz=3", r"override 'learner.stepz=3': learner.stepz: unknown key \(did you mean 'steps'\?\)"),
        ("learner.steps=abc", r"override 'learner.steps=abc': learner.steps: expected an integer, got 'abc'"),
        ("learner.steps", r"override 'learner.steps': expected key.sub=value"),
        ("learner..steps=3", r"override 'learner..steps=3': malformed key"),
        ("rollout=3", r"override 'rollout=3': rollout: expected a mapping, got 3"),
    ],
)
def test_bad_override_names_override_and_key(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(CONFIGS / "tiny" / "grpo.yaml", [override])


def test_expect_refuses_another_stage():
    with pytest.raises(ConfigError, match="needs a 'grpo' config, the file is 'sft'"):
        load_config(CONFIGS / "tiny" / "sft.yaml", expect="grpo")


def test_sft_defaults_are_aurora_values():
    cfg = load_config(CONFIGS / "tiny" / "sft.yaml")
    assert isinstance(cfg, SFTConfig)
    assert (cfg.loss.ce, cfg.loss.bce, cfg.loss.dice) == (1.0, 2.0, 0.5)
    assert (cfg.model.lora.r, cfg.model.lora.alpha, cfg.model.lora.dropout) == (8, 16, 0.05)
    assert cfg.model.lora.target_modules == ["q_proj", "v_proj"]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "aurora_rl.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_config_show_prints_resolved_config():
    run = _cli("config", "show", str(CONFIGS / "tiny" / "grpo.yaml"), "learner.steps=7")
    assert run.returncode == 0, run.stderr
    assert "stage: grpo" in run.stdout
    assert "steps: 7" in run.stdout
    assert "hidden_size: 128" in run.stdout


def test_cli_config_show_error_exit_code_and_message(tmp_path):
    path = write(tmp_path, "bad.yaml", "stage: grpo\nobjective:\n  clip_low: high\n")
    run = _cli("config", "show", str(path))
    assert run.returncode == 2
    assert f"{path}: objective.clip_low: expected a number, got 'high'" in run.stderr


@pytest.mark.parametrize("stage, override, message", [
    ("grpo", "learner.kl_coef=0.1", "learner.kl_coef: renamed: now objective.kl_coef"),
    ("grpo", "learner.normalize_std=false", "replaced by objective.advantage: grpo (normalize_std true) or centered"),
    ("grpo", "learner.every_object_rows=4", "learner.every_object_rows: renamed: now mix.every_object_rows"),
    ("sft", "cot.every_object_share=0.2", "cot.every_object_share: renamed: now mix.every_object_share"),
    ("reflect", "corrector.skip_unasked_scenes=true", "renamed: now mix.skip_unasked_scenes"),
    ("sft", "trainer.blind_video_fraction=0.5", "trainer.blind_video_fraction: a research option, removed"),
    ("sft", "model.tiny.text_pretrain.list_order=shuffled", "removed (docs/FINDINGS.md names the commit"),
])
def test_a_replaced_key_names_what_replaces_it(stage, override, message, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_config(CONFIGS / "tiny" / f"{stage}.yaml", [override])
    assert f"override '{override}'" in str(error.value)  # and where it came from
    key, value = override.split("=")
    tree: dict = {"inherit": str(CONFIGS / "tiny" / f"{stage}.yaml")}
    node = tree
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[key.split(".")[-1]] = yaml.safe_load(value)
    path = write(tmp_path, "old.yaml", yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {key}: ") + ".*" + re.escape(message.split(": ")[-1])):
        load_config(path)


def test_every_cross_field_check_is_in_the_schema():
    with pytest.raises(ConfigError, match="1 prompts x group_size 1 = 1 completions per step, fewer than "
                                          r"learner.num_ranks \(2\)"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["learner.prompts_per_step=1", "rollout.sampling.group_size=1"])
    with pytest.raises(ConfigError, match="mix.every_object_data: gives the every-object rows"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["mix.every_object_data=/data"])
    with pytest.raises(ConfigError, match="model.path: stage 2 starts from the stage-1 checkpoint"):
        load_config(CONFIGS / "tiny" / "reflect.yaml", ["model.path=null"])


def test_the_research_recipes_are_config_files():
    """The two results that must stay reproducible (docs/FINDINGS.md) run from files under configs/."""
    gain = {stage: load_config(CONFIGS / "tiny" / "gain" / f"{stage}.yaml") for stage in ("direct", "sft", "reflect",
                                                                                          "grpo")}
    assert gain["direct"].direct_answer and gain["direct"].trainer.epochs == 1
    sft = gain["sft"]
    assert (sft.model.tiny.text_pretrain.steps, sft.trainer.epochs, sft.mix.every_object_share,
            sft.mix.skip_unasked_scenes) == (3000, 6, 0.2, True)
    assert sft.teacher_path == "runs/grpo_gain/runs/tiny-direct/checkpoint"
    reflect = gain["reflect"]
    assert reflect.mix == sft.mix and reflect.data.max_samples == 2800
    assert (reflect.rollout.num_actors, reflect.rollout.sampling.group_size) == (2, 2)
    grpo = gain["grpo"]
    assert (grpo.objective.advantage, grpo.objective.mask_min_iou, grpo.reward.iou_variant) == (
        "centered", 0.5, "thresholded")
    assert (grpo.mix.every_object_rows, grpo.mix.every_object_data) == (4, "runs/grpo_gain/data")
    assert (grpo.rollout.sampling.group_size, grpo.rollout.sampling.max_new_tokens, grpo.learner.optim.lr) == (
        4, 320, 2e-5)
    fixed = load_config(CONFIGS / "tiny" / "grpo_32_rows.yaml")
    assert (fixed.data.max_samples, fixed.learner.steps, fixed.learner.prompts_per_step) == (32, 100, 16)
    assert (fixed.objective.mask_min_iou, fixed.learner.optim.lr, fixed.rollout.sampling.group_size) == (0.5, 1e-4, 4)
    assert fixed.objective.advantage == "grpo" and fixed.mix.every_object_rows == 0


def float_fields(cls, prefix: str = ""):
    """The key path of every float leaf of a config dataclass (Optional[float] included)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from float_fields(tp, f"{prefix}{f.name}.")
        elif tp is float or float in typing.get_args(tp):
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("stage", ["sft", "reflect", "grpo", "eval"])
def test_every_float_field_refuses_nan_and_infinity_naming_key_and_value(stage):
    """One rule in the loader: a NaN weight or an infinite timeout is no setting anyone means."""
    path = CONFIGS / "tiny" / f"{stage}.yaml"
    keys = list(float_fields(type(load_config(path))))
    assert "model.lora.dropout" in keys
    for key in keys:
        for text, shown in ((".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"), ("1e999", "inf")):
            with pytest.raises(ConfigError, match=re.escape(f"{key}: expected a finite number, got {shown}")):
                load_config(path, [f"{key}={text}"])


def test_nan_in_a_file_names_the_file_and_key(tmp_path):
    path = write(tmp_path, "bad.yaml", f"inherit: {CONFIGS / 'tiny' / 'grpo.yaml'}\nreward:\n  iou: .nan\n"
                                       "broadcast:\n  timeout_s: .inf\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: reward.iou: expected a finite number, got nan")):
        load_config(path)


def test_grpo_needs_a_group_of_at_least_two():
    with pytest.raises(ConfigError, match=re.escape("override 'rollout.sampling.group_size=1': "
                                                    "rollout.sampling.group_size: must be >= 2 for GRPO, got 1")):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["rollout.sampling.group_size=1"])
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["rollout.sampling.group_size=2"])
    assert cfg.rollout.sampling.group_size == 2
    # stage 2 mines failures from sampled answers: one per clip is a choice, not a broken advantage
    cfg = load_config(CONFIGS / "tiny" / "reflect.yaml", ["rollout.sampling.group_size=1"])
    assert cfg.rollout.sampling.group_size == 1


def test_grpo_refuses_greedy_sampling():
    """The learner weighs tokens by their sampling log-probabilities: a greedy group has none."""
    grpo, reflect = CONFIGS / "tiny" / "grpo.yaml", CONFIGS / "tiny" / "reflect.yaml"
    with pytest.raises(ConfigError, match=re.escape("rollout.sampling.temperature: must be >= 1e-05 for GRPO, got 0.0")):
        load_config(grpo, ["rollout.sampling.temperature=0"])
    assert load_config(grpo, ["rollout.sampling.temperature=0.5"]).rollout.sampling.temperature == 0.5
    # stage 2 may decode greedily
    assert load_config(reflect, ["rollout.sampling.temperature=0"]).rollout.sampling.temperature == 0.0
