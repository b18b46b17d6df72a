"""Settings of `dist-train train`: the experiment file (configs/*.yaml) plus `key=value` overrides.

The DeepSpeed JSON under configs/deepspeed/ holds what belongs to the engine (ZeRO stage, precision,
clipping, communication); batch sizes, optimizer and schedule live here, once, and are written into
the DeepSpeed config by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dist_train.config import require


@dataclass
class DataConfig:
    shards: str = "shards/world-tiny"  # a preprocessed dataset (dist-train preprocess)
    split: str = "train"
    batch_size: int = 32  # per rank and step
    num_workers: int = 1  # loader processes per rank
    shuffle_buffer: int = 512
    image_size: int = 64
    max_tokens: int = 32  # including the start and end tokens
    resampled: bool = False  # draw shards with replacement (multi-node runs); epochs become nominal
    language_temperature: Optional[float] = None  # language-balanced sampling: shares ~ p ** (1/T)
    prepare_world: bool = True  # pack and preprocess shards/world-<preset> when it is missing
    # batches carry "features" (the preprocessing's precomputed image features, float32) instead of
    # decoded "images" (SMALR, VSE++); the dataset needs its features stage (features.enabled=true)
    image_features: bool = False
    # > 0: batches of whole images, this many captions of distinct languages each (see train/loader.py)
    captions_per_image: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at the last step


@dataclass
class DeepSpeedConfig:
    config: str = "configs/deepspeed/zero2.json"
    zero_stage: Optional[int] = None  # overrides the JSON
    precision: Optional[str] = None  # fp32 | bf16 | fp16; overrides the JSON
    gradient_clipping: Optional[float] = None  # overrides the JSON


@dataclass
class CheckpointConfig:
    every_steps: int = 100
    keep_last: int = 2


@dataclass
class LogConfig:
    every_steps: int = 10
    projector_sentences: int = 500  # test sentences in TensorBoard's embedding projector at each evaluation


@dataclass
class EvalConfig:
    every_steps: int = 0  # 0: only at the end
    split: str = "test"
    batch_size: int = 128


@dataclass
class TrainConfig:
    out_dir: Optional[str] = None  # checkpoints/, tb/ and the resolved config go here
    model: str = "globetrotter"
    model_config: dict[str, Any] = field(default_factory=dict)  # keys of the model's config class
    objective: dict[str, Any] = field(default_factory=dict)  # loss weights, temperatures, switches
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    max_steps: Optional[int] = None  # stop after this many optimizer steps...
    epochs: Optional[float] = None  # ... or after this many passes over the training split
    deterministic: bool = True  # deterministic kernels (bitwise-exact resume on CPU)


def validate(cfg: TrainConfig) -> None:
    require(cfg.out_dir is not None, "out_dir", cfg.out_dir, "set out_dir=DIR (where checkpoints and logs go)")
    require(cfg.data.batch_size > 0, "data.batch_size", cfg.data.batch_size, "must be positive")
    require(cfg.data.num_workers >= 0, "data.num_workers", cfg.data.num_workers, "must be >= 0")
    require(cfg.data.captions_per_image >= 0 and (cfg.data.captions_per_image == 0
            or cfg.data.batch_size % cfg.data.captions_per_image == 0), "data.captions_per_image",
            cfg.data.captions_per_image, "must be 0 (off) or a positive divisor of data.batch_size")
    require(cfg.data.max_tokens >= 3, "data.max_tokens", cfg.data.max_tokens, "must be at least 3")
    require(cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "must be positive")
    require(len(cfg.optim.betas) == 2, "optim.betas", list(cfg.optim.betas), "give two values")
    require(cfg.max_steps is not None or cfg.epochs is not None, "max_steps", cfg.max_steps,
            "set max_steps or epochs")
    require(cfg.max_steps is None or cfg.max_steps > 0, "max_steps", cfg.max_steps, "must be positive")
    require(cfg.epochs is None or cfg.epochs > 0, "epochs", cfg.epochs, "must be positive")
    require(cfg.deepspeed.zero_stage in (None, 0, 1, 2, 3), "deepspeed.zero_stage", cfg.deepspeed.zero_stage,
            "use 0, 1, 2 or 3")
    require(cfg.deepspeed.precision in (None, "fp32", "bf16", "fp16"), "deepspeed.precision",
            cfg.deepspeed.precision, "use fp32, bf16 or fp16")
    require(cfg.checkpoint.every_steps > 0, "checkpoint.every_steps", cfg.checkpoint.every_steps, "must be positive")
    require(cfg.checkpoint.keep_last >= 1, "checkpoint.keep_last", cfg.checkpoint.keep_last, "must be at least 1")
    require(cfg.log.every_steps > 0, "log.every_steps", cfg.log.every_steps, "must be positive")
