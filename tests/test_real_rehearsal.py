"""A CPU rehearsal of the real path: ``configs/real/*`` as a user runs them, each stage a
``ray job submit`` to one local Ray node, CoT from one served endpoint.

Only what a CPU forces is overridden (``cpu_forces`` and the per-stage lists below): the model's
widths (a tiny random VideoLLaMA2.1-AV in the released layout instead of the 7B folder, a tiny
random SAM, frames at its SigLIP's 56 px, float32), the paths, the worker counts and steps, and
GPUs -> CPUs. Everything else is the real configs': the backbone and its input preparation
(frames padded to squares, 16 frames, 30 s of audio), LoRA, the losses, the CoT sources, the
rewards and the objective. The dataset is a Ref-AVS-layout fixture with the official metadata's
quirks: a TODO row, a repeated uid, vids beginning with ``-`` and ``--``, a null row, and 16:9
frames.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.data.layout_fixtures import write_official_quirks_fixture
from tests.model import videollama2_reference as ref
from tests.test_job_submission import assert_shows_the_job_only, job_console, submit

def rehearsal_data(root: Path) -> Path:
    """The official-quirks fixture with 16:9 frames (and masks to match)."""
    write_official_quirks_fixture(root)
    for frame in (root / "media").glob("*/frames/*.jpg"):
        Image.open(frame).resize((32, 18)).save(frame)
    for mask in (root / "gt_mask").glob("*/*/*.png"):
        Image.open(mask).resize((32, 18), Image.NEAREST).save(mask)
    return root


def cpu_forces(backbone: Path, data: Path, runs: Path) -> list[str]:
    """What every stage overrides: the model's widths, the paths, float32 on the CPU."""
    return [f"model.path={backbone}", "model.sam.path=null", "model.sam.input_size=64", "model.dtype=float32",
            f"data.root={data}", "data.image_size=56", "data.mask_size=32", f"run.output_dir={runs}"]


SFT_ON_CPU = ["trainer.num_workers=1", "trainer.use_gpu=false", "trainer.batch_size_per_worker=1",
              "trainer.grad_accum=1", "trainer.max_steps=1", "trainer.epochs=1", "trainer.log_every=1"]
ROLLOUT_ON_CPU = ["rollout.num_actors=1", "rollout.prompts_per_batch=2", "rollout.kv_cache_gib=1",
                  "rollout.sampling.max_new_tokens=16"]
MINING_ON_CPU = ["mining_gpus_per_actor=0"]
EVAL_ON_CPU = ["num_actors=1", "gpus_per_actor=0", "max_new_tokens=16"]
GRPO_ON_CPU = ["reward.num_workers=1", "learner.num_ranks=1", "learner.use_gpu=false", "learner.steps=1",
               "learner.prompts_per_step=2", "placement.mode=cpu", "placement.rollout.gpus=0", "placement.rollout.cpus=1",
               "placement.learner.gpus=0", "placement.learner.cpus=1", "placement.autoscale.enabled=false",
               "placement.ready_timeout_s=120", "broadcast.bucket_mb=16"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_real_configs_run_every_stage_as_submitted_jobs(ray_node, teacher_endpoint, tmp_path):
    data = rehearsal_data(tmp_path / "ref-avs")
    backbone = ref.write_videollama2_av(tmp_path / "models", seed=0, positions=4096)
    runs = tmp_path / "runs"
    forces = cpu_forces(backbone, data, runs)
    took = {}

    def stage(name: str, *entrypoint: str) -> list[str]:
        started = time.monotonic()
        run = submit(ray_node, *entrypoint, timeout=600)
        took[name] = time.monotonic() - started
        print(f"[rehearsal] {name}: {took[name]:.0f} s", flush=True)
        assert run.returncode == 0 and "succeeded" in run.stdout + run.stderr, \
            f"{name}:\n" + (run.stdout + run.stderr)[-4000:]
        console = job_console(run.stdout)
        assert_shows_the_job_only(console)
        return console

    cot = runs / "cot_train.jsonl"
    with ThreadPoolExecutor(2) as pool:  # independent: two jobs on the node at once, as a user may submit them
        teacher = pool.submit(stage, "teacher", "train", "sft", "--config", "configs/real/direct.yaml", *forces,
                              *SFT_ON_CPU)
        console = stage("cot", "cot", "generate", "--endpoint", teacher_endpoint, "--model", "teacher", "--data",
                        str(data), "--split", "train", "--out", str(cot), "--frames", "1", "--answer-tokens", "800")
        teacher.result()
    assert any("CoT: 2/2 accepted" in line for line in console), console
    console = stage("stage 1", "train", "sft", "--config", "configs/real/sft.yaml", *forces, *SFT_ON_CPU,
                    f"cot.path={cot}", f"teacher_path={runs / 'real-direct' / 'checkpoint'}")
    logs = runs / "real-sft" / "logs"
    assert any(line.startswith("[sft] step 1/1") for line in console), console  # printed by the driver
    assert any(line.startswith(f"[sft] library logs in {logs}: ") for line in console), console
    assert "[sft] step 1/1" in (logs / "sft-rank0.log").read_text()  # what rank 0 wrote went to its file
    stage("stage 2", "train", "reflect", "--config", "configs/real/reflect.yaml", *forces, *SFT_ON_CPU,
          *ROLLOUT_ON_CPU, *MINING_ON_CPU, f"model.path={runs / 'real-sft' / 'checkpoint'}", f"corrector.path={cot}")
    console = stage("grpo", "train", "grpo", "--config", "configs/real/grpo.yaml", *forces, *ROLLOUT_ON_CPU,
                    *GRPO_ON_CPU, f"model.path={runs / 'real-reflect' / 'checkpoint'}")
    assert any(line.startswith("[grpo] step 1/1") for line in console), console
    logs = runs / "real-grpo" / "logs"
    assert {"rollout-0.log", "scorer-0.log", "learner-0.log"} <= {p.name for p in logs.iterdir()}
    assert "INFO" in (logs / "rollout-0.log").read_text(errors="replace")  # vLLM's lines: in the file
    stage("eval", "eval", "--config", "configs/real/eval.yaml", *forces, *EVAL_ON_CPU,
          f"model.path={runs / 'real-grpo' / 'checkpoint'}")
    stage("report", "report", str(runs / "real-eval"), "--data", str(data), "--out", str(runs / "report"))

    for name in ("real-direct", "real-sft", "real-reflect", "real-grpo"):
        manifest = json.loads((runs / name / "checkpoint" / "aurora_model.json").read_text())
        assert manifest["model"]["backbone"] == "videollama2-av"
        assert manifest["media"]["prep"]["frame_fit"] == "pad" and manifest["media"]["prep"]["video_frames"] == 16
    assert (runs / "report" / "index.html").exists()
    print("rehearsal stage times (s):", {k: round(v) for k, v in took.items()})  # the suite's --durations has the sum
