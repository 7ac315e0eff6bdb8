"""Every torch path of a GPU run, on a CUDA device this CPU-only build does not have.

The step functions the stages run (the SFT step with its teacher, the GRPO learner step with
its KL reference, micro-batches, data-mix rows and skip flag, the rollout [SEG] pass with SAM,
the evaluation forward) run with the policy on "cuda:0" of ``tests/virtual_device.py``: a batch,
model, teacher or reference left on the CPU, a collective tensor off the device, or ``.numpy()``
of a CUDA tensor raises there, as on a GPU. The data comes from the real readers, on the CPU,
as in the stages. DeepSpeed's engine is stood in for by plain backward and AdamW steps: on a GPU
DeepSpeed keeps its own tensors on its device, and what is checked here is what the stages hand
it. The first tests show that each kind of mistake is caught at all.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from aurora_rl.config import load_config
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.prompts.answer_format import build_prompt, compose_answer
from tests.config.test_config_loading import CONFIGS
from tests.model.tiny_policy import SHAPE, make_inputs, make_policy, tiny_model_config
from tests.virtual_device import CPU, CUDA, DeviceMismatch, VirtualCuda, collectives_on, device_of


class PlainEngine:
    """What the stages call on a DeepSpeed engine, as plain torch (no ZeRO, no communication)."""

    def __init__(self, module: torch.nn.Module, lr: float = 1e-3):
        self.module = module
        self.optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
        self.grad_norm = None

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        params = [p for p in self.module.parameters() if p.grad is not None]
        self.grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad()

    def get_global_grad_norm(self):
        return self.grad_norm


@pytest.fixture(scope="module")
def tiny():
    return make_policy(seed=3)


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory) -> str:
    from aurora_rl.model.checkpoint import save_policy

    policy, tok = tiny
    return str(save_policy(policy, tok, tiny_model_config(), SHAPE, tmp_path_factory.mktemp("device") / "ckpt"))


@pytest.fixture(scope="module")
def clips(synthetic_root):
    return RefAVSDataset(synthetic_root, "train", mask_size=SHAPE.mask_size, image_size=SHAPE.image_size)


@contextmanager
def on_cuda(*modules: torch.nn.Module):
    """Virtual CUDA with copies of ``modules`` on it (the originals stay as they are)."""
    with VirtualCuda():
        yield [copy.deepcopy(m).to("cuda:0") for m in modules]


@contextmanager
def one_process_group():
    """A gloo group of this process alone (the learner's skip flag is all-reduced in it)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def on_device(module: torch.nn.Module) -> bool:
    return all(device_of(p) == CUDA for p in module.parameters()) and all(
        device_of(p.grad) == CUDA for p in module.parameters() if p.grad is not None)


# ------------------------------------------------------------------ the checks catch the mistakes


def test_a_cpu_batch_a_cpu_teacher_a_cpu_collective_and_numpy_of_cuda_are_each_caught(tiny):
    policy, tok = tiny
    batch = make_inputs(tok, batch=1)
    with on_cuda(policy) as (student,):
        with pytest.raises(DeviceMismatch):  # the batch left on the CPU
            student(batch)
        out = student(batch.to("cuda:0"))
        assert device_of(out.answer_logprobs) == CUDA and out.answer_logprobs.device == CUDA
        with pytest.raises(DeviceMismatch):  # a teacher left on the CPU, fed the moved batch
            policy(batch.to("cuda:0"), with_masks=False)
        with pytest.raises(TypeError, match="cuda"):
            out.mask_logits.numpy()
        with one_process_group(), collectives_on("cuda:0"):
            with pytest.raises(DeviceMismatch, match="all_reduce"):
                torch.distributed.all_reduce(torch.tensor([1.0]))
            torch.distributed.all_reduce(torch.tensor([1.0], device="cuda:0"))


# ------------------------------------------------------------------ the stages' step functions


def test_the_sft_step_with_distillation_runs_on_the_device_its_models_were_loaded_to(tiny, checkpoint, clips):
    from learner.sft_data import SFTBatcher, SFTExample
    from learner.sft_step import load_models, sft_step

    _, tok = tiny
    answer = compose_answer("the red thing .", "it sounds .", "the red thing .", "dog")
    # the second row has no [SEG] target: no mask, no distillation
    examples = [SFTExample(r.uid, i, answer, "dog", segment=i != 1) for i, r in enumerate(clips.rows[:4])]
    batch = SFTBatcher(examples, clips, tok, batch_size=3, world_size=1, rank=0, seed=0).batch(0, 0, 2)
    cfg = load_config(CONFIGS / "tiny" / "sft.yaml", [])
    with VirtualCuda():
        student, teacher, *_ = load_models(checkpoint, checkpoint, CUDA)
        before = [p.detach().clone() for p in student.parameters() if p.requires_grad]
        parts = sft_step(PlainEngine(student), teacher, batch, cfg.loss, CUDA)
        assert np.isfinite(parts["total"]) and parts["distill"] >= 0 and np.isfinite(parts["grad_norm"])
        assert on_device(student) and on_device(teacher)
        after = [p.detach() for p in student.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(after, before))  # it stepped


def grpo_records(tok, clips, n: int):
    from aurora_rl.records import RolloutRecord, encode

    prompt = np.array(tok(build_prompt(clips.rows[0].exp), add_special_tokens=False).input_ids)
    with_seg = tok(compose_answer("a .", "b .", "c .", "dog"), add_special_tokens=False).input_ids
    answers = [with_seg, with_seg[:6], with_seg, with_seg[:4], with_seg][:n]
    return [RolloutRecord(uid=clips.rows[k % 2].uid, group_id=f"g{k % 2}", sample_index=k, group_size=n,
                          policy_version=0, prompt_token_ids=prompt, completion_token_ids=np.array(ids),
                          sampling_logprobs=np.full(len(ids), -1.0), completion_text="", rewards={"iou": 0.5},
                          meta={"dataset_index": k % 2})
            for k, ids in enumerate(answers)], encode


def test_the_grpo_learner_step_with_kl_micro_batches_and_mix_rows_keeps_every_tensor_on_the_device(tiny, checkpoint,
                                                                                                   clips):
    """Also the step's skip flag: all-reduced in an NCCL group on a GPU, so it must be a CUDA tensor."""
    from learner.grpo_step import learn_step, load_models, step_inputs
    from learner.sft_data import SFTBatcher, SFTExample

    policy, tok = tiny
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["objective.kl_coef=0.1", "learner.micro_batch=2",
                                                       "learner.mask_frames_per_clip=2", "mix.every_object_rows=1",
                                                       "learner.deepspeed.zero_stage=1"])
    records, _ = grpo_records(tok, clips, 5)
    batch, inputs = step_inputs(records, [1.0, -1.0, 0.5, -0.5, 0.0], clips, cfg, policy.ids.seg, rank=0, step=0,
                                version=0)
    mix = SFTBatcher([SFTExample(clips.rows[2].uid, 2, "a dog .", None, segment=False)], clips, tok, 1, 1, 0,
                     0).batch(0, 0)["student"]
    with VirtualCuda(), one_process_group(), collectives_on(CUDA):
        model, reference, *_ = load_models(checkpoint, cfg, CUDA)
        stats = learn_step(PlainEngine(model), reference, batch, inputs, len(records), mix, cfg, CUDA)
        assert stats["skipped"] == 0.0 and stats["micro_batches"] == 3
        assert np.isfinite(stats["loss"]) and stats["kl"] >= 0 and "mix_ce" in stats and stats["mask_dice"] > 0
        # the off-policy sums of every micro-batch (the records were sampled by version 0, the learner's)
        assert stats["lag0_tokens"] == stats["tokens"] > 0 and np.isfinite(stats["is_weight_sum"])
        assert on_device(model) and on_device(reference)


def test_the_seg_pass_and_sam_take_cpu_clips_to_the_device_and_hand_back_host_masks(tiny, clips):
    """The rollout actor's and evaluation actor's torch half around vLLM (PolicyEngine)."""
    from aurora_rl.model.seg_pass import embed_clips, segment_answers

    policy, tok = tiny
    picked = [clips[0], clips[1]]
    prompts = [tok(build_prompt(c.expression), add_special_tokens=False).input_ids for c in picked]
    with_seg = tok(compose_answer("a .", "b .", "c .", "dog"), add_special_tokens=False).input_ids
    with on_cuda(policy) as (model,):
        model.eval().requires_grad_(False)
        batch, embeds = embed_clips(model, prompts, picked, CUDA)
        assert all(device_of(e) == CPU for e in embeds)  # host copies, as vLLM takes them
        has, probs = segment_answers(model, picked, batch, embeds, [0, 0, 1], [with_seg, with_seg[:3], with_seg],
                                     SHAPE.mask_size)
    assert has == [True, False, True]
    assert probs.shape == (3, picked[0].frames.shape[0], SHAPE.mask_size, SHAPE.mask_size)
    assert probs[0].any() and not probs[1].any() and probs.dtype == np.float16


def test_the_evaluation_forward_generates_and_segments_on_the_device(tiny, clips):
    """A greedy answer with the policy's own generation and its masks (``aurora-rl infer``, and
    the GPU check's evaluation path)."""
    from aurora_rl.model.generation import answer_clip

    policy, tok = tiny
    clip = clips[0]
    prompt = tok(build_prompt(clip.expression), add_special_tokens=False).input_ids
    with on_cuda(policy) as (model,):
        done = answer_clip(model, tok, prompt, torch.from_numpy(clip.frames), torch.from_numpy(clip.fbank),
                           max_new_tokens=6, frame_box=tuple(int(v) for v in clip.frame_box))
        assert device_of(done.mask_logits) == CUDA
        assert len(done.token_ids) <= 6 and done.mask_logits.shape[-1] == SHAPE.mask_size
