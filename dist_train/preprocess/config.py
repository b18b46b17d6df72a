"""Settings of `dist-train preprocess`: one dataclass per stage, each stage switchable.

The YAML files under `configs/preprocess/` override these defaults, and `key=value` on the command line
overrides those. Resource settings (CPUs, GPUs, threads, concurrency) sit with the stage they size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dist_train.config import ConfigError, require
from dist_train.data.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS


@dataclass
class ImagesConfig:
    enabled: bool = True  # validate, decode, resize and re-encode every image
    max_side: Optional[int] = None  # longest side after resizing; None keeps the size
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are rejected before decoding
    jpeg_quality: int = DEFAULT_JPEG_QUALITY


@dataclass
class CaptionsConfig:
    normalize: bool = True  # Unicode NFC and collapsed whitespace


@dataclass
class VocabConfig:
    enabled: bool = True  # train (or copy) the shared sentencepiece vocabulary to OUT/spm.model
    model: Optional[str] = None  # an existing sentencepiece model to use instead of training one
    size: int = 30000  # Globetrotter's; a soft limit, small corpora give smaller vocabularies
    model_type: str = "bpe"
    splits: list[str] = field(default_factory=lambda: ["train"])
    # Languages are sampled with probability proportional to p ** (1 / temperature), p their share of
    # the captions: 1 keeps the natural mix, larger values lift small languages toward uniform.
    temperature: float = 2.0
    max_sentences: int = 2_000_000  # sentences given to the trainer (after balancing)
    character_coverage: float = 0.9995
    seed: int = 0


@dataclass
class TokenizeConfig:
    enabled: bool = True  # store the caption's token ids as `<key>.tokens.npy` (int32)


@dataclass
class TranslateConfig:
    enabled: bool = False
    # hf | ctranslate2 | world (the built-in benchmark's reference translator) | pivot (a trained
    # visual-pivoting captioner: translation through images, no parallel text; translate/pivot.py)
    backend: str = "hf"
    model: Optional[str] = None  # local model directory, or a template with {src} and {tgt}
    compute_type: str = "default"  # CTranslate2: default | int8 | float16 | ...
    batch_size: int = 32
    num_beams: int = 1
    max_length: int = 128
    device: str = "cpu"
    num_threads: Optional[int] = None  # intra-op threads per actor; defaults to ceil(num_cpus)
    num_cpus: float = 0.5  # reserved per actor: leave CPUs for the read and write tasks
    num_gpus: float = 0.0
    concurrency: int = 1  # number of translator actors
    # (a) and (b) of the papers: every image of these splits gets a caption in each of these
    # languages, translated from one of its captions (preferring `source_languages` in order).
    augment_splits: list[str] = field(default_factory=list)
    augment_languages: list[str] = field(default_factory=list)
    source_languages: list[str] = field(default_factory=list)
    # (c): every caption of these splits carries its translations into these languages in
    # `meta.translations`, for SMALR's cross-lingual consistency at test time.
    query_splits: list[str] = field(default_factory=list)
    query_languages: list[str] = field(default_factory=list)


@dataclass
class FeaturesConfig:
    enabled: bool = False  # store pooled ResNet features as `<key>.features.npy` (float16)
    arch: str = "resnet18"
    weights: Optional[str] = None  # local weight file; None gives a seeded random network (logged)
    # A dist-train run (its folder, its checkpoints folder or an export) whose image network extracts the
    # features instead: arch and weights then come from it (e.g. a Globetrotter run for SMALR's features).
    checkpoint: Optional[str] = None
    image_size: int = 224
    resize: int = 256
    crops: str = "ten"  # ten | five | center; features are averaged over the crops
    batch_size: int = 64
    device: str = "cpu"
    num_threads: Optional[int] = None
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    concurrency: int = 1
    seed: int = 0


@dataclass
class RayConfig:
    address: Optional[str] = None  # join a running cluster ("auto", "ray://host:10001"); None starts a local one
    num_cpus: Optional[int] = None  # local cluster only; default: the usable cores
    object_store_memory: Optional[int] = None  # local cluster only, bytes
    task_num_cpus: float = 1.0  # per read/clean and tokenize/write task


@dataclass
class PreprocessConfig:
    # relative paths a config file gives here are relative to that file (dist_train.config.load_config)
    PATH_KEYS = ("vocab.model", "features.weights", "features.checkpoint", "translate.model")

    images: ImagesConfig = field(default_factory=ImagesConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # fsspec options per protocol for --in/--out in object storage (as --storage-options); never written out
    storage_options: dict[str, Any] = field(default_factory=dict)


def validate(cfg: PreprocessConfig) -> None:
    require(cfg.vocab.size >= 300, "vocab.size", cfg.vocab.size,
            "must be at least 300 (256 byte-fallback pieces, special tokens and some characters)")
    require(cfg.vocab.model_type in ("bpe", "unigram"), "vocab.model_type", cfg.vocab.model_type, "use bpe or unigram")
    require(cfg.vocab.temperature > 0, "vocab.temperature", cfg.vocab.temperature, "must be positive")
    require(0 < cfg.vocab.character_coverage <= 1, "vocab.character_coverage", cfg.vocab.character_coverage,
            "must be in (0, 1]")
    require(cfg.vocab.max_sentences > 0, "vocab.max_sentences", cfg.vocab.max_sentences, "must be positive")
    require(not cfg.vocab.enabled or cfg.vocab.model is not None or bool(cfg.vocab.splits), "vocab.splits",
            list(cfg.vocab.splits), "name the splits whose captions train the vocabulary")
    require(cfg.vocab.model is None or Path(cfg.vocab.model).is_file(), "vocab.model", cfg.vocab.model,
            "file not found")
    require(cfg.images.max_side is None or cfg.images.max_side > 0, "images.max_side", cfg.images.max_side,
            "must be positive or null")
    require(cfg.images.max_pixels > 0, "images.max_pixels", cfg.images.max_pixels, "must be positive")
    require(1 <= cfg.images.jpeg_quality <= 95, "images.jpeg_quality", cfg.images.jpeg_quality, "must be 1-95")
    require(not cfg.tokenize.enabled or cfg.vocab.enabled, "tokenize.enabled", cfg.tokenize.enabled,
            "tokenization needs the vocabulary: set vocab.enabled=true (with vocab.model to reuse one)")
    t = cfg.translate
    require(t.backend in ("hf", "ctranslate2", "world", "pivot"), "translate.backend", t.backend,
            "use hf, ctranslate2, world or pivot")
    if t.enabled:
        require(t.backend == "world" or bool(t.model), "translate.model", t.model,
                f"the {t.backend} backend needs a local model directory")
        require(bool(t.augment_splits) or bool(t.query_splits), "translate.augment_splits", list(t.augment_splits),
                "translation is enabled but no split is named in translate.augment_splits or translate.query_splits")
        require(not t.augment_splits or bool(t.augment_languages), "translate.augment_languages",
                list(t.augment_languages), "name the languages every image should have")
        require(not t.query_splits or bool(t.query_languages), "translate.query_languages",
                list(t.query_languages), "name the languages to translate queries into")
    require(t.num_beams >= 1, "translate.num_beams", t.num_beams, "must be at least 1")
    require(t.max_length >= 1, "translate.max_length", t.max_length, "must be at least 1")
    for name in ("translate", "features"):
        stage = getattr(cfg, name)
        require(stage.concurrency >= 1, f"{name}.concurrency", stage.concurrency, "must be at least 1")
        require(stage.num_cpus >= 0, f"{name}.num_cpus", stage.num_cpus, "must be >= 0")
        require(stage.num_gpus >= 0, f"{name}.num_gpus", stage.num_gpus, "must be >= 0")
        require(stage.batch_size >= 1, f"{name}.batch_size", stage.batch_size, "must be at least 1")
        require(stage.num_threads is None or stage.num_threads >= 1, f"{name}.num_threads", stage.num_threads,
                "must be at least 1 or null")
    f = cfg.features
    require(f.image_size >= 1, "features.image_size", f.image_size, "must be positive")
    require(f.resize >= f.image_size, "features.resize", f.resize,
            f"must be at least features.image_size ({f.image_size}): the crops are cut from the resized image")
    require(cfg.features.crops in ("ten", "five", "center"), "features.crops", cfg.features.crops,
            "use ten, five or center")
    require(cfg.ray.task_num_cpus > 0, "ray.task_num_cpus", cfg.ray.task_num_cpus, "must be positive")
    require(cfg.ray.num_cpus is None or cfg.ray.num_cpus >= 1, "ray.num_cpus", cfg.ray.num_cpus,
            "must be at least 1 or null")
    require(cfg.ray.object_store_memory is None or cfg.ray.object_store_memory > 0, "ray.object_store_memory",
            cfg.ray.object_store_memory, "must be a positive number of bytes or null")


__all__ = ["PreprocessConfig", "validate", "ConfigError"]
