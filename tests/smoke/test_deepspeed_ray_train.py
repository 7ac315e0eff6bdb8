"""A DeepSpeed ZeRO-2 step with 2 gloo workers under Ray Train, on a tiny LoRA causal LM."""

from __future__ import annotations

import json

import pytest


def train_func(config):
    import os

    os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from aurora_rl.config.schema import DeepSpeedConfig
    from learner.deepspeed_config import deepspeed_config

    deepspeed.init_distributed(dist_backend="gloo")  # reuses the group Ray Train made
    rank = dist.get_rank()
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
    ))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ds = deepspeed_config(DeepSpeedConfig(zero_stage=2), micro_batch=2, grad_accum=1)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)

    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data shard
    tokens = torch.randint(0, 64, (2, 16), generator=g)
    losses = []
    for _ in range(config["steps"]):
        loss = engine(input_ids=tokens, labels=tokens).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss))
    lora = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_" in n])
    with open(os.path.join(config["out"], f"rank{rank}.json"), "w") as f:
        json.dump({"losses": losses, "lora_sum": float(lora.double().sum()), "world": dist.get_world_size(),
                   "zero_stage": engine.zero_optimization_stage()}, f)
    engine.destroy()
    dist.barrier()


@pytest.mark.timeout(600)
def test_zero2_trains_with_two_gloo_workers(ray_node, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = tmp_path / "out"
    out.mkdir()
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"steps": 4, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(storage_path=str(tmp_path / "storage"), name="zero2-smoke"),
    )
    trainer.fit()

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world"] == 2 and r["zero_stage"] == 2
        assert r["losses"][-1] < r["losses"][0]  # it learns its batch
    # ZeRO-2 partitions optimizer state and gradients, not parameters: replicas stay identical.
    assert ranks[0]["lora_sum"] == pytest.approx(ranks[1]["lora_sum"], rel=1e-6)
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different data shards
