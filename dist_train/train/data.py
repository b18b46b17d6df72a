"""What training reads from a preprocessed dataset: its vocabulary and its training loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dist_train.train.config import TrainConfig
from dist_train.train.loader import ShardStream, TrainLoader


@dataclass(frozen=True)
class Vocab:
    path: str
    size: int
    pad_id: int
    bos_id: int
    eos_id: int
    mask_id: int


def dataset_vocab(cfg: TrainConfig) -> Vocab:
    from dist_train.preprocess.vocab import MASK_PIECE, load_vocab

    path = Path(cfg.data.shards) / "spm.model"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: data.shards must be a dataset made by dist-train preprocess "
                                "(with its vocabulary stage on)")
    sp = load_vocab(path.read_bytes())
    return Vocab(str(path), sp.get_piece_size(), sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id(MASK_PIECE))


def caption_group(md: dict[str, Any]) -> str:
    """Which captions translate each other: the fact a benchmark caption says; for machine
    translations, their source caption; otherwise the caption itself."""
    meta = md.get("meta") or {}
    if "said" in meta:
        from dist_train.data.world.dataset import translation_group

        return "world:" + translation_group(meta)
    source = (md.get("provenance") or {}).get("source_caption_id")
    return "caption:" + (source or md["caption_id"])


def build_stream(cfg: TrainConfig, vocab: Vocab, split: str, rank: int, world_size: int, batch_size: int,
                 num_workers: int, languages: list[str] | None = None) -> ShardStream:
    d = cfg.data
    return ShardStream(d.shards, split, batch_size, rank=rank, world_size=world_size, num_workers=num_workers,
                       seed=cfg.seed, shuffle_buffer=d.shuffle_buffer, image_size=d.image_size,
                       max_tokens=d.max_tokens, resampled=d.resampled, language_temperature=d.language_temperature,
                       languages=languages, special_ids=(vocab.pad_id, vocab.bos_id, vocab.eos_id),
                       translation_group=caption_group, image_features=d.image_features,
                       captions_per_image=d.captions_per_image)


def build_train_loader(cfg: TrainConfig, vocab: Vocab, rank: int, world_size: int) -> TrainLoader:
    stream = build_stream(cfg, vocab, cfg.data.split, rank, world_size, cfg.data.batch_size, cfg.data.num_workers)
    return TrainLoader(stream, cfg.data.num_workers)
