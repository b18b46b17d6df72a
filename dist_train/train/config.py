"""Settings of `dist-train train`: the experiment file (configs/*.yaml) plus `key=value` overrides.

The DeepSpeed JSON under configs/deepspeed/ holds what belongs to the engine (ZeRO stage, precision,
clipping, communication); batch sizes, optimizer and schedule live here, once, and are written into
the DeepSpeed config by the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from dist_train.config import ConfigError, check_known_keys, coerce_fields, require


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
    # with captions_per_image: the languages of each image's captions, in this order (a translation pair,
    # [en, de], for the MMT objective); images lacking one are skipped; empty: any distinct languages
    caption_languages: list[str] = field(default_factory=list)


@dataclass
class OptimConfig:
    # adamw (torch's AdamW on CPU, DeepSpeed's fused Adam on GPUs), lamb (DeepSpeed's fused LAMB, for very
    # large contrastive batches) or onebitadam (DeepSpeed's 1-bit Adam: compressed communication after
    # `onebit_freeze_steps` of plain Adam); the last two need GPUs
    name: str = "adamw"
    onebit_freeze_steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at the last step


# optim.name -> DeepSpeed's optimizer type
OPTIMIZERS = {"adamw": "AdamW", "lamb": "Lamb", "onebitadam": "OneBitAdam"}


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
    # resume from this step folder (stepNNNNNNNN) instead of the one `latest` names, e.g. the previous
    # complete one when the latest is truncated; a newer complete checkpoint still wins, so the same
    # command can be rerun (or requeued) once training has moved past it
    resume_from: Optional[str] = None
    # where a run whose out_dir is a URL (s3://...) is staged on each node's disk (train/remote_run.py);
    # null: ~/.cache/dist_train/runs/<the URL's host and path>
    staging_dir: Optional[str] = None


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
    # relative paths a config file gives here are relative to that file (dist_train.config.load_config)
    PATH_KEYS = ("deepspeed.config", "model_config.image_weights")

    out_dir: Optional[str] = None  # checkpoints/, tb/ and the resolved config go here (a folder or a URL)
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
    # resume a run whose saved config.yaml differs in keys that change the run (train/resume.py); the
    # old config is kept as config.<step>.yaml (`dist-train train --allow-config-change`)
    allow_config_change: bool = False
    # fsspec options per protocol for the dataset and the run folder in object storage, e.g.
    # {s3: {endpoint_url: "http://minio:9000"}} (as --storage-options); written to files by option name only
    storage_options: dict[str, Any] = field(default_factory=dict)


def run_dir(cfg: TrainConfig) -> Path:
    """The local folder a run writes: out_dir, or its staging folder when out_dir is a URL."""
    from dist_train.train.remote_run import run_folder

    return run_folder(cfg.out_dir, cfg.checkpoint.staging_dir)


def validate(cfg: TrainConfig) -> None:
    """Every check that needs no dataset: run by load_config before anything is packed or written."""
    require(cfg.out_dir is not None, "out_dir", cfg.out_dir, "set out_dir=DIR (where checkpoints and logs go)")
    d = cfg.data
    require(d.batch_size > 0, "data.batch_size", d.batch_size, "must be positive")
    require(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    require(d.captions_per_image >= 0 and (d.captions_per_image == 0
            or d.batch_size % d.captions_per_image == 0), "data.captions_per_image",
            d.captions_per_image, "must be 0 (off) or a positive divisor of data.batch_size")
    langs = d.caption_languages
    langs = None if isinstance(langs, (str, int, float)) or langs is None else list(langs)
    require(langs is not None and all(isinstance(x, str) and x for x in langs)
            and (not langs or (len(set(langs)) == len(langs) == d.captions_per_image)), "data.caption_languages",
            langs, "must be empty or data.captions_per_image distinct language codes, e.g. [en, de] with "
            "data.captions_per_image=2")
    require(d.max_tokens >= 3, "data.max_tokens", d.max_tokens, "must be at least 3")
    require(d.image_size > 0, "data.image_size", d.image_size, "must be positive")
    require(d.shuffle_buffer >= 0, "data.shuffle_buffer", d.shuffle_buffer, "must be >= 0 (0: no shuffle buffer)")
    require(d.language_temperature is None or d.language_temperature > 0, "data.language_temperature",
            d.language_temperature, "must be positive or null")
    require(bool(str(d.split).strip()), "data.split", d.split, "name the training split")
    o = cfg.optim
    require(o.name in OPTIMIZERS, "optim.name", o.name, f"use one of {', '.join(OPTIMIZERS)}")
    require(o.onebit_freeze_steps >= 0, "optim.onebit_freeze_steps", o.onebit_freeze_steps, "must be >= 0")
    require(o.lr > 0, "optim.lr", o.lr, "must be positive")
    require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    require(len(o.betas) == 2, "optim.betas", list(o.betas), "give two values")
    require(all(0 <= b < 1 for b in o.betas), "optim.betas", list(o.betas), "each must be in [0, 1)")
    require(o.eps > 0, "optim.eps", o.eps, "must be positive")
    require(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0")
    require(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", o.min_lr_ratio, "must be in [0, 1]")
    require(cfg.max_steps is not None or cfg.epochs is not None, "max_steps", cfg.max_steps,
            "set max_steps or epochs")
    require(cfg.max_steps is None or cfg.max_steps > 0, "max_steps", cfg.max_steps, "must be positive")
    require(cfg.epochs is None or cfg.epochs > 0, "epochs", cfg.epochs, "must be positive")
    ds = cfg.deepspeed
    require(ds.zero_stage in (None, 0, 1, 2, 3), "deepspeed.zero_stage", ds.zero_stage, "use 0, 1, 2 or 3")
    require(ds.precision in (None, "fp32", "bf16", "fp16"), "deepspeed.precision", ds.precision,
            "use fp32, bf16 or fp16")
    require(ds.gradient_clipping is None or ds.gradient_clipping >= 0, "deepspeed.gradient_clipping",
            ds.gradient_clipping, "must be >= 0 (0: no clipping) or null")
    require(cfg.checkpoint.every_steps > 0, "checkpoint.every_steps", cfg.checkpoint.every_steps, "must be positive")
    require(cfg.checkpoint.keep_last >= 1, "checkpoint.keep_last", cfg.checkpoint.keep_last, "must be at least 1")
    if cfg.checkpoint.resume_from is not None:
        from dist_train.train.checkpoint import TAG_PATTERN

        require(bool(TAG_PATTERN.fullmatch(cfg.checkpoint.resume_from)), "checkpoint.resume_from",
                cfg.checkpoint.resume_from, "name a step folder of the run's checkpoints, e.g. step00000020")
    require(cfg.log.every_steps > 0, "log.every_steps", cfg.log.every_steps, "must be positive")
    require(cfg.log.projector_sentences >= 0, "log.projector_sentences", cfg.log.projector_sentences,
            "must be >= 0 (0: no projector)")
    require(cfg.eval.every_steps >= 0, "eval.every_steps", cfg.eval.every_steps, "must be >= 0 (0: only at the end)")
    require(cfg.eval.batch_size > 0, "eval.batch_size", cfg.eval.batch_size, "must be positive")
    require(bool(str(cfg.eval.split).strip()), "eval.split", cfg.eval.split, "name the evaluation split")
    check_model_settings(cfg)


# fields of a model's config class that its objective fills in from the dataset (vocabulary, features)
_PLACEHOLDER = 1 << 20


def check_model_settings(cfg: TrainConfig) -> None:
    """`model`, `objective` and `model_config` checked by the classes that use them, with no dataset
    and no weights: the keys exist, numbers are numbers (text such as `1e-3` becomes one; it stays
    the value used), and the objective's and the model config's own checks pass. What depends on the
    vocabulary or the features is checked again when the model is built."""
    import dataclasses
    import importlib

    from dist_train.models.registry import model_config_class
    from dist_train.train.objectives import OBJECTIVES

    if cfg.model not in OBJECTIVES:
        raise ConfigError(f"config key 'model' = {cfg.model!r}: no training objective for it "
                          f"(known: {', '.join(sorted(OBJECTIVES))})")
    module = importlib.import_module(OBJECTIVES[cfg.model].__module__)
    settings = [v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
                and v.__module__ == module.__name__ and v.__name__.endswith("ObjectiveConfig")]
    raw = dict(cfg.objective)
    if settings:
        check_known_keys(raw, settings[0], "objective", f"a setting of the {cfg.model} objective")
        raw = coerce_fields(raw, settings[0], "objective")
        for key, value in raw.items():
            cfg.objective[key] = value
    parse = getattr(module, "_objective_config", None)
    if parse is not None:
        try:
            parse(dict(cfg.objective))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key 'objective': {' '.join(str(exc).split())}") from None

    config_class = model_config_class(cfg.model)
    model_raw = dict(cfg.model_config)
    check_known_keys(model_raw, config_class, "model_config", f"a setting of the {cfg.model} model")
    model_raw = coerce_fields(model_raw, config_class, "model_config")
    for key, value in model_raw.items():
        cfg.model_config[key] = value
    names = {f.name: f for f in fields(config_class) if f.init}
    trial = {name: _PLACEHOLDER for name, f in names.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if "max_length" in names:
        trial["max_length"] = cfg.data.max_tokens
    if "text_only" in names and isinstance(raw.get("text_only"), bool):
        trial["text_only"] = raw["text_only"]
    placeholders = getattr(module, "model_config_placeholders", None)  # fields that are not plain sizes
    if placeholders is not None:
        trial.update(placeholders(model_raw, _PLACEHOLDER))
    trial.update(model_raw)
    try:
        config_class(**trial)
    except (TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        first = re.match(r"[A-Za-z_]\w*", text)
        key = f"model_config.{first[0]}" if first and first[0] in names else "model_config"
        shown = f" = {model_raw[first[0]]!r}" if key != "model_config" and first[0] in model_raw else ""
        raise ConfigError(f"config key '{key}'{shown}: {text}") from None
    weights = model_raw.get("image_weights")
    if weights is not None:
        from pathlib import Path

        require(Path(str(weights)).is_file(), "model_config.image_weights", weights, "file not found")
