"""The typed configuration of every stage.

One dataclass per stage (``SFTConfig``, ``ReflectConfig``, ``GRPOConfig``, ``EvalConfig``)
built from shared sections. Defaults are the AURORA paper's values where it states one and
the tiny CPU setting otherwise; ``configs/`` holds the files users start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from aurora_rl.config.loader import field
from aurora_rl.config.placement import PlacementConfig

DType = Literal["float32", "bfloat16", "float16"]


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str = "runs"  # the run writes under output_dir/name
    seed: int = 0


@dataclass
class ServicesConfig:
    """Where Redis and Ray are. ``null`` starts private local instances for the run."""

    redis_url: Optional[str] = None  # e.g. redis://:password@10.0.0.5:6390/0
    ray_address: Optional[str] = None  # "auto" joins the cluster this node belongs to


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    layout: Literal["refavs", "avsbench-s4", "avsbench-ms3"] = "refavs"
    train_split: str = "train"
    eval_splits: list[str] = field(factory=lambda: ["test_s", "test_u", "test_n"])
    num_frames: int = field(10, ge=1)
    image_size: int = field(64, ge=8)  # frames resized to this square size for the vision encoder
    mask_size: int = field(64, ge=8)  # ground-truth masks resized to this (nearest)
    sample_rate: int = field(16000, ge=1000)
    fbank_bins: int = field(128, ge=8)
    max_samples: Optional[int] = field(None, ge=1)  # cap per split (None = all)


@dataclass
class TextPretrainConfig:
    """Next-token training of the tiny LLM on text over every class before stage 1
    (aurora_rl/model/text_pretrain.py): what a released LLM knows before it sees a clip."""

    steps: int = field(0, ge=0)  # 0: the LLM starts random
    batch_size: int = field(32, ge=1)
    lr: float = field(1e-3, gt=0.0)
    list_share: float = field(0.2, ge=0.0, le=1.0)  # texts naming every object ("every object .")


@dataclass
class TinyBackboneConfig:
    """Random-initialised small backbone that trains on a CPU (vLLM-CPU needs head_dim >= 32)."""

    hidden_size: int = field(128, ge=32)
    num_layers: int = field(2, ge=1)
    num_heads: int = field(4, ge=1)
    num_kv_heads: int = field(2, ge=1)
    intermediate_size: int = field(256, ge=8)
    encoder_width: int = field(64, ge=8)  # channels of the tiny vision / audio encoders
    vision_grid: int = field(4, ge=1)  # each frame chunk becomes grid x grid tokens
    vision_chunks: int = field(2, ge=1)  # frames are averaged in this many temporal chunks
    vision_stem: Literal["patch", "conv"] = "patch"  # see aurora_rl/model/av_encoders.py vision_stem
    audio_tokens: int = field(10, ge=1)  # the soundtrack becomes this many tokens, in time order
    # standardise the fbank per clip and LayerNorm the media tokens to the text embeddings' scale
    # (without it the raw log-mel energies give audio tokens ~1000x the norm of text tokens)
    media_norm: bool = True
    sam_hidden: int = field(64, ge=16)  # tiny SAM's image-encoder width
    sam_layers: int = field(2, ge=1)
    sam_patch: int = field(8, ge=2)
    text_pretrain: TextPretrainConfig = field(factory=TextPretrainConfig)

    def check(self):
        if self.hidden_size % self.num_heads:
            yield "num_heads", f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
        elif self.hidden_size // self.num_heads < 32:
            yield "num_heads", (
                f"head_dim = hidden_size/num_heads = {self.hidden_size // self.num_heads}; "
                "vLLM's CPU attention needs head_dim >= 32"
            )
        if self.num_heads % self.num_kv_heads:
            yield "num_kv_heads", f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}"


@dataclass
class LoraConfig:
    """LoRA on the LLM (AURORA: r=8, alpha=16, dropout 0.05 on q/v); ``fully_trained`` LLM
    modules are trained in full; ``train_encoders`` trains the vision/audio encoders and
    connectors (the tiny backbone's are random, so it must; real encoders stay frozen)."""

    enabled: bool = True
    r: int = field(8, ge=1)
    alpha: int = field(16, ge=1)
    dropout: float = field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = field(factory=lambda: ["q_proj", "v_proj"])
    fully_trained: list[str] = field(factory=lambda: ["lm_head", "embed_tokens"])
    train_encoders: bool = True


@dataclass
class SamConfig:
    path: Optional[str] = None  # HF folder or Meta .pth file; null = tiny random SAM
    input_size: int = field(224, ge=32)  # AURORA runs ViT-H at 224 px with interpolated positions
    freeze_image_encoder: bool = True
    # false keeps SAM's mask decoder as loaded: a promptable decoder trained jointly with a
    # still-random LLM learns to ignore the prompt (docs/FINDINGS.md)
    train_mask_decoder: bool = True
    cache_clips: int = field(1024, ge=0)  # clips whose frozen image embeddings stay in memory


@dataclass
class ModelConfig:
    backbone: Literal["tiny", "videollama2-av", "qwen2.5-omni"] = "tiny"
    path: Optional[str] = None  # pretrained weights folder or an aurora_rl checkpoint
    dtype: DType = "float32"
    # Frames the vision encoder takes per clip and what fills the gap when a clip has fewer
    # (aurora_rl/data/media_prep.py); null: the backbone's own (videollama2-av: 16, repeat).
    video_frames: Optional[int] = field(None, ge=1)
    frame_fill: Optional[Literal["black", "repeat"]] = None
    tiny: TinyBackboneConfig = field(factory=TinyBackboneConfig)
    lora: LoraConfig = field(factory=LoraConfig)
    sam: SamConfig = field(factory=SamConfig)

    def check(self):
        if self.backbone != "tiny" and not self.path:
            yield "path", f"backbone {self.backbone!r} needs a local weights folder (nothing is downloaded)"
        if self.tiny.text_pretrain.steps > 0 and self.backbone != "tiny":
            yield "tiny", "text_pretrain is for the random tiny backbone; a pretrained one has read its text already"
        elif self.tiny.text_pretrain.steps > 0 and self.lora.enabled:
            yield "lora", ("tiny.text_pretrain trains the whole tiny LLM, and a LoRA checkpoint stores only the "
                           "adapters: set lora.enabled=false")


@dataclass
class DeepSpeedConfig:
    zero_stage: int = field(2, ge=0, le=3)
    offload_optimizer: bool = False
    offload_params: bool = False
    grad_clip: float = field(1.0, gt=0.0)

    def check(self):
        if self.offload_params and self.zero_stage != 3:
            yield "offload_params", "parameter offload needs zero_stage 3"
        if self.offload_optimizer and self.zero_stage == 0:
            yield "offload_optimizer", "optimizer offload needs zero_stage >= 1"


@dataclass
class OptimConfig:
    lr: float = field(2e-4, gt=0.0)
    weight_decay: float = field(0.0, ge=0.0)
    warmup_steps: int = field(0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "cosine"


@dataclass
class TrainerConfig:
    """Ray Train settings for the SFT stages."""

    num_workers: int = field(2, ge=1)
    use_gpu: bool = False
    batch_size_per_worker: int = field(4, ge=1)
    grad_accum: int = field(1, ge=1)
    epochs: int = field(1, ge=1)
    max_steps: Optional[int] = field(None, ge=1)
    log_every: int = field(1, ge=1)
    checkpoint_every: int = field(50, ge=1)
    mask_frames_per_clip: Optional[int] = field(None, ge=1)  # supervise k random frames per clip (None: all)
    deepspeed: DeepSpeedConfig = field(factory=DeepSpeedConfig)
    optim: OptimConfig = field(factory=OptimConfig)


@dataclass
class SFTLossConfig:
    """Stage-1/2 loss = ce*CE + bce*BCE(mask) + dice*Dice(mask) + distill*MSE([SEG] embeddings)."""

    ce: float = field(1.0, ge=0.0)
    bce: float = field(2.0, ge=0.0)
    dice: float = field(0.5, ge=0.0)
    distill: float = field(1.0, ge=0.0)  # lambda; 0 turns distillation off


@dataclass
class CoTConfig:
    source: Literal["scene", "jsonl", "teacher"] = "scene"
    path: Optional[str] = None  # the JSONL file (jsonl) or the teacher model folder (teacher)
    max_tokens: int = field(150, ge=8)

    def check(self):
        if self.source in ("jsonl", "teacher") and not self.path:
            yield "path", f"source {self.source!r} needs a path"


@dataclass
class MixConfig:
    """What a stage learns besides the referring rows of its training split (aurora_rl/data/mix.py):
    "every object ." rows, answered from the scene facts (every object named, no [SEG]), and the
    referring rows left out. The defaults add nothing; docs/FINDINGS.md says what they change."""

    # stages 1 and 2: "every object ." rows added, as a share of the referring rows, on distinct videos
    every_object_share: float = field(0.0, ge=0.0)
    # stages 1 and 2: referring rows whose scene shows an object of a class no training row asks for
    # are asked "every object ." instead (stage 2 samples none of them)
    skip_unasked_scenes: bool = False
    # GRPO: "every object ." rows each learner rank learns by CE in every step (weight objective.mix_ce)
    every_object_rows: int = field(0, ge=0)
    # GRPO: the dataset root whose training split gives those rows (None: data.root)
    every_object_data: Optional[str] = None

    def check(self):
        if self.every_object_data and not self.every_object_rows:
            yield "every_object_data", "gives the every-object rows; set mix.every_object_rows > 0 as well"


# vLLM decodes greedily below this temperature (its _SAMPLING_EPS)
GREEDY_TEMPERATURE = 1e-5


@dataclass
class SamplingConfig:
    """How completions are sampled (AURORA: G=3, temperature 1.0, top-p 0.9, 150 new tokens).

    The actors record each sampled token's log-probability under the distribution it was drawn
    from: softmax(logits / temperature) renormalised over the top-p nucleus (vLLM's processed
    log-probabilities). The GRPO learner takes its own and the KL reference's log-probabilities
    under the same distribution, from these settings (``aurora_rl/model/sampling_logprobs.py``).
    """

    group_size: int = field(3, ge=1)
    temperature: float = field(1.0, ge=0.0)  # GRPO: >= GREEDY_TEMPERATURE (0 is greedy decoding)
    top_p: float = field(0.9, gt=0.0, le=1.0)  # 1.0: no nucleus
    max_new_tokens: int = field(150, ge=1)


@dataclass
class RolloutConfig:
    num_actors: int = field(2, ge=1)
    prompts_per_batch: int = field(4, ge=1)
    sampling: SamplingConfig = field(factory=SamplingConfig)
    kv_cache_gib: float = field(1.0, gt=0.0)  # vLLM-CPU takes nearly all RAM unless capped
    cpu_threads: Optional[str] = None  # VLLM_CPU_OMP_THREADS_BIND ("0-1", "auto", ...); null = "nobind"
    # a rollout call (one actor's share of a step) unanswered this long stops the job, naming the actor
    call_timeout_s: float = field(1800.0, gt=0.0)
    # an actor not ready this long after it was placed (loading the checkpoint, vLLM's start) stops the job
    start_timeout_s: float = field(1800.0, gt=0.0)


@dataclass
class RewardConfig:
    """Reward = format*R_format + iou*R_iou + cls*R_class (AURORA definitions by default)."""

    format: float = 1.0
    iou: float = 1.0
    cls: float = 1.0
    iou_variant: Literal["mean", "thresholded"] = "mean"
    iou_threshold: float = field(0.5, ge=0.0, le=1.0)  # for iou_variant=thresholded
    mask_threshold: float = field(0.5, ge=0.0, le=1.0)  # sigmoid > this counts as foreground
    num_workers: int = field(2, ge=1)
    max_worker_deaths: int = field(10, ge=0)  # reward workers replaced beyond this: the job stops, naming it


@dataclass
class ObjectiveConfig:
    """The GRPO objective (aurora_rl/grpo/objective.py): the advantage estimator and the policy
    loss are chosen by name from their registries (aurora_rl/grpo/advantages.py, policy_loss.py)."""

    advantage: Literal["grpo", "centered"] = "grpo"  # grpo: (r - mean) / (std + eps); centered: r - mean
    adv_eps: float = field(1e-4, gt=0.0)
    # clipped: the ratio to the sampling policy, clipped; decoupled: the ratio to the learner's
    # policy before the step, clipped, times the truncated importance weight from the sampling
    # policy (for completions sampled by older weights, learner.max_policy_lag > 0)
    policy_loss: Literal["clipped", "decoupled"] = "clipped"
    clip_low: float = field(0.2, ge=0.0)
    clip_high: float = field(0.2, ge=0.0)
    # decoupled: importance weights above this are cut to it (None: untruncated); with either
    # loss, the share of tokens whose weight is above it is logged (is_truncated)
    is_cap: Optional[float] = field(2.0, gt=0.0)
    kl_coef: float = field(0.0, ge=0.0)  # k3 estimator against the frozen reference; 0 = off
    mask_bce: float = field(2.0, ge=0.0)
    mask_dice: float = field(0.5, ge=0.0)
    # the mask loss only on completions whose rollout mask already had at least this IoU reward,
    # i.e. whose [SEG] pointed at the referred object; None = every completion with a [SEG]
    mask_min_iou: Optional[float] = field(None, ge=0.0, le=1.0)
    mix_ce: float = field(1.0, ge=0.0)  # weight of the CE of the data mix's rows (mix.every_object_rows)


@dataclass
class LearnerConfig:
    num_ranks: int = field(2, ge=1)
    use_gpu: bool = False
    steps: int = field(20, ge=1)
    prompts_per_step: int = field(4, ge=1)
    mask_frames_per_clip: Optional[int] = field(None, ge=1)  # as TrainerConfig.mask_frames_per_clip
    # false: the vision and audio encoders keep their stage-2 weights; the LLM and the [SEG]
    # projector still learn (only what the model's config trains is ever trained)
    train_encoders: bool = True
    # completions per forward pass on a rank (None: all of the rank's share at once); their
    # gradients add up to the step's, so only memory changes; needs deepspeed.zero_stage <= 1
    # (tests/grpo/test_grpo_job.py::test_micro_batches_add_up_to_the_step_of_the_whole_batch)
    micro_batch: Optional[int] = field(None, ge=1)
    # 0: synchronous steps, strictly on-policy. k >= 1: asynchronous; rollout actors sample up to k
    # steps ahead of the learner with the weights they hold, and a group sampled more than k
    # versions before the learner's is dropped and counted (stale_dropped)
    max_policy_lag: int = field(0, ge=0)
    # a learner step unanswered this long (a rank hung in a collective) stops the job, naming the ranks
    step_timeout_s: float = field(3600.0, gt=0.0)
    checkpoint_every: int = field(10, ge=1)
    deepspeed: DeepSpeedConfig = field(factory=DeepSpeedConfig)
    optim: OptimConfig = field(factory=lambda: OptimConfig(lr=1e-5, schedule="constant"))

    def check(self):
        if self.micro_batch is not None and self.deepspeed.zero_stage >= 2:
            # Measured with 2 ranks and a trained SAM mask decoder: under ZeRO-2 the summed gradients
            # had a norm 1-5 % off the whole batch's; under ZeRO-1 they match to float precision.
            yield "micro_batch", ("micro-batches need deepspeed.zero_stage 0 or 1 (ZeRO-2 and 3 reduce gradients "
                                  f"during the backward), got zero_stage {self.deepspeed.zero_stage}")


@dataclass
class BroadcastConfig:
    bucket_mb: float = field(16.0, gt=0.0)  # gloo on CPU: fastest at 4-16 MB (docs/BENCHMARKS.md)
    timeout_s: float = field(120.0, gt=0.0)
    # One backend for every member of the group (learner rank 0 and each rollout actor): auto is
    # NCCL when the learner and the rollout actors all hold GPUs, gloo otherwise.
    backend: Literal["auto", "gloo", "nccl"] = "auto"


@dataclass
class QueueConfig:
    rollout_stream: str = "aurora:rollouts"
    scored_stream: str = "aurora:scored"
    max_record_bytes: int = field(8 * 1024 * 1024, ge=1024)
    claim_idle_ms: int = field(30000, ge=100)  # pending this long -> reclaimed from a dead consumer
    max_deliveries: int = field(3, ge=1)  # delivered this often, never acknowledged: dead-lettered (a poison record)
    collect_timeout_s: float = field(600.0, gt=0.0)  # the learner waits this long for a step's scored groups


@dataclass
class MetricsConfig:
    """Which scoring convention: ``official`` (Ref-AVS evaluation: J at sigmoid > 0.4, F over 255
    thresholds with beta^2 = 0.3 on probabilities, S at > 0.5, groups of 4 clips) or ``aurora``
    (the AURORA code: J at > 0.5, F on raw logits, one clip at a time). See docs/DATA.md."""

    convention: Literal["official", "aurora"] = "official"


@dataclass
class SFTConfig:
    stage: Literal["sft"]
    run: RunConfig = field(factory=RunConfig)
    services: ServicesConfig = field(factory=ServicesConfig)
    data: DataConfig = field(factory=DataConfig)
    model: ModelConfig = field(factory=ModelConfig)
    trainer: TrainerConfig = field(factory=TrainerConfig)
    loss: SFTLossConfig = field(factory=SFTLossConfig)
    cot: CoTConfig = field(factory=CoTConfig)
    mix: MixConfig = field(factory=MixConfig)
    teacher_path: Optional[str] = None  # frozen direct-answer model for [SEG] distillation
    direct_answer: bool = False  # train on "It is <class> [SEG]." (the distillation teacher)

    def check(self):
        if self.loss.distill > 0 and not self.direct_answer and self.teacher_path is None:
            yield "teacher_path", "distillation (loss.distill > 0) needs a teacher_path; set loss.distill=0 to turn it off"


@dataclass
class ReflectConfig:
    stage: Literal["reflect"]
    run: RunConfig = field(factory=RunConfig)
    services: ServicesConfig = field(factory=ServicesConfig)
    data: DataConfig = field(factory=DataConfig)
    model: ModelConfig = field(factory=ModelConfig)
    trainer: TrainerConfig = field(factory=TrainerConfig)
    loss: SFTLossConfig = field(factory=lambda: SFTLossConfig(distill=0.0))
    rollout: RolloutConfig = field(factory=RolloutConfig)
    corrector: CoTConfig = field(factory=CoTConfig)
    mix: MixConfig = field(factory=MixConfig)  # as stage 1's: the stage-1 rows it mixes in, and what is mined
    failure_iou: float = field(0.5, ge=0.0, le=1.0)  # mean IoU below this (or a wrong class) = failure
    mix_ratio: float = field(0.5, ge=0.0, le=1.0)  # fraction of reflective samples in the fine-tune mix
    trigger: str = "Wait, let me reconsider."
    mining_gpus_per_actor: float = field(0.0, ge=0.0)  # each mining actor's GPUs (rollout.num_actors of them)

    def check(self):
        if not self.model.path:
            yield "model.path", "stage 2 starts from the stage-1 checkpoint: set model.path"


@dataclass
class GRPOConfig:
    stage: Literal["grpo"]
    run: RunConfig = field(factory=RunConfig)
    services: ServicesConfig = field(factory=ServicesConfig)
    data: DataConfig = field(factory=DataConfig)
    model: ModelConfig = field(factory=ModelConfig)
    rollout: RolloutConfig = field(factory=RolloutConfig)
    reward: RewardConfig = field(factory=RewardConfig)
    learner: LearnerConfig = field(factory=LearnerConfig)
    objective: ObjectiveConfig = field(factory=ObjectiveConfig)
    mix: MixConfig = field(factory=MixConfig)
    broadcast: BroadcastConfig = field(factory=BroadcastConfig)
    queue: QueueConfig = field(factory=QueueConfig)
    placement: PlacementConfig = field(factory=PlacementConfig)

    def check(self):
        completions = self.learner.prompts_per_step * self.rollout.sampling.group_size
        if completions < self.learner.num_ranks:
            yield "learner.prompts_per_step", (
                f"{self.learner.prompts_per_step} prompts x group_size {self.rollout.sampling.group_size} = "
                f"{completions} completions per step, fewer than learner.num_ranks ({self.learner.num_ranks}): "
                "every rank needs at least one")
        if self.rollout.sampling.group_size < 2:
            yield "rollout.sampling.group_size", (
                f"must be >= 2 for GRPO, got {self.rollout.sampling.group_size}: the advantage compares the "
                "completions of a group, and a group of one has nothing to compare with")
        if self.rollout.sampling.temperature < GREEDY_TEMPERATURE:
            yield "rollout.sampling.temperature", (
                f"must be >= {GREEDY_TEMPERATURE} for GRPO, got {self.rollout.sampling.temperature}: below it vLLM "
                "decodes greedily, and a greedy group has neither spread nor sampling log-probabilities to weigh")
        gpus = self.placement.learner.gpus
        if self.learner.use_gpu and gpus == 0:
            yield "placement.learner.gpus", "learner.use_gpu needs a GPU in each rank's bundle: set it to 1"
        if gpus > 0 and not self.learner.use_gpu:
            yield "placement.learner.gpus", "reserves GPUs that learner.use_gpu=false leaves idle"
        if self.broadcast.backend == "nccl" and not self.gpus_everywhere:
            yield "broadcast.backend", ("nccl needs a GPU on the learner and on every rollout actor "
                                        "(learner.use_gpu, placement.rollout.gpus): use gloo or auto")
        auto = self.placement.autoscale
        if auto.enabled and auto.max_actors < self.rollout.num_actors:
            yield "placement.autoscale.max_actors", (
                f"{auto.max_actors} is below rollout.num_actors ({self.rollout.num_actors})")

    @property
    def gpus_everywhere(self) -> bool:
        return self.learner.use_gpu and self.placement.rollout.gpus > 0

    @property
    def broadcast_backend(self) -> str:
        """The weight broadcast's backend, the same for the learner and every rollout actor."""
        if self.broadcast.backend != "auto":
            return self.broadcast.backend
        return "nccl" if self.gpus_everywhere else "gloo"


@dataclass
class EvalConfig:
    stage: Literal["eval"]
    run: RunConfig = field(factory=RunConfig)
    services: ServicesConfig = field(factory=ServicesConfig)
    data: DataConfig = field(factory=DataConfig)
    model: ModelConfig = field(factory=ModelConfig)
    num_actors: int = field(1, ge=1)
    gpus_per_actor: float = field(0.0, ge=0.0)  # each evaluation actor's GPUs (vLLM + the [SEG] pass)
    max_new_tokens: int = field(150, ge=1)
    metrics: MetricsConfig = field(factory=MetricsConfig)


STAGES = {"sft": SFTConfig, "reflect": ReflectConfig, "grpo": GRPOConfig, "eval": EvalConfig}

