"""The per-worker loop of the SFT stages (run by Ray Train's ``TorchTrainer`` on every rank).

Each rank builds the policy from the run's initial checkpoint (identical on all ranks),
wraps it in a DeepSpeed engine (ZeRO-2 by default) with a client AdamW, and steps through its
shard of the examples. Every ``checkpoint_every`` steps and at the end, all ranks save the
DeepSpeed state (model, sharded optimizer, scheduler, position) and rank 0 the policy
checkpoint, reported as one Ray Train checkpoint; a rerun of the same run resumes from it.
A trial (``aurora-rl preflight``) takes one step and reports every worker's memory instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path


def sft_train_loop(config: dict) -> None:
    import ray.train

    from aurora_rl.services.library_logs import capture_output, worker_log

    # DeepSpeed's, torch's and Ray Train's output: to the run folder; the driver prints the progress
    capture_output(worker_log(config["run_dir"], f"{config['stage']}-rank{ray.train.get_context().get_world_rank()}"))
    if not config["use_gpu"]:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from aurora_rl.config.schema import SFTConfig
    from aurora_rl.data.refavs_dataset import RefAVSDataset
    from aurora_rl.model.checkpoint import save_policy
    from aurora_rl.services.devices import memory_report
    from learner.deepspeed_config import deepspeed_config
    from learner.lr_schedule import lr_multiplier
    from learner.safe_load import weights_only_loads
    from learner.sft_data import SFTBatcher, SFTExample
    from learner.sft_step import load_models, sft_step
    from learner.train_log import TrainLogger, say

    cfg: SFTConfig = config["cfg"]
    deepspeed.init_distributed(dist_backend="nccl" if config["use_gpu"] else "gloo")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # the GPU Ray Train gave this worker (one per worker), or the CPU: the model, the teacher and every batch go there
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")

    policy, teacher, tokenizer, model_cfg, shape = load_models(config["init_dir"], config["teacher_dir"], device)

    examples = [SFTExample(**json.loads(line)) for line in Path(config["examples"]).read_text().splitlines()]
    clips = RefAVSDataset.from_config(cfg.data, cfg.data.train_split, **shape.reader_options())
    tr = cfg.trainer
    batcher = SFTBatcher(examples, clips, tokenizer, tr.batch_size_per_worker, world, rank, cfg.run.seed)
    total_steps = 1 if config["trial"] else tr.max_steps or tr.epochs * batcher.steps_per_epoch

    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tr.optim.lr, weight_decay=tr.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps, tr.optim.warmup_steps, tr.optim.schedule))
    ds = deepspeed_config(tr.deepspeed, tr.batch_size_per_worker, tr.grad_accum, model_cfg.dtype)
    engine, optimizer, _, scheduler = deepspeed.initialize(model=policy, optimizer=optimizer, lr_scheduler=scheduler,
                                                           config=ds)
    weights_only_loads(engine)  # a resumed checkpoint cannot run code

    step = 0
    checkpoint = ray.train.get_checkpoint()  # set when Ray Train restarted the workers of this run
    if checkpoint or config["resume_from"]:
        with (checkpoint.as_directory() if checkpoint else nullcontext(config["resume_from"])) as d:
            _, client = engine.load_checkpoint(d, tag="state")
        step = client["step"]
        if rank == 0:
            say(f"[{config['stage']}] resumed at step {step} from {checkpoint.path if checkpoint else d}")

    logger = TrainLogger(config["run_dir"], config["stage"], total_steps, rank, start_step=step)
    engine.train()
    while step < total_steps:
        epoch, in_epoch = divmod(step, batcher.steps_per_epoch)
        torch.manual_seed(cfg.run.seed * 1_000_003 + step * 101 + rank)  # dropout: same draws after a resume
        parts = sft_step(engine, teacher, batcher.batch(epoch, in_epoch, tr.mask_frames_per_clip), cfg.loss, device)
        step += 1
        parts.update(lr=float(scheduler.get_last_lr()[0]), epoch=float(epoch))
        if step % tr.log_every == 0 or step == total_steps:
            logger.log(step, parts, samples=tr.batch_size_per_worker * world)
        if config["trial"]:  # aurora-rl preflight: every worker's memory after the step, no model saved
            reports = [None] * world
            dist.all_gather_object(reports, memory_report(str(device)))
            with tempfile.TemporaryDirectory() as tmp:  # Ray Train keeps only metrics that come with a checkpoint
                (Path(tmp) / "memory.json").write_text(json.dumps(reports))
                ray.train.report({"step": step, **parts},
                                 checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
        elif step % tr.checkpoint_every == 0 or step == total_steps:
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag="state", client_state={"step": step})
                if rank == 0:
                    save_policy(engine.module, tokenizer, model_cfg, shape, Path(tmp) / "policy")
                ray.train.report({"step": step, **parts}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    logger.close()
    engine.destroy()
    dist.barrier()
