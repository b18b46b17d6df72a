"""What training reads from a preprocessed dataset: its vocabulary and its training loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

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

    from dist_train.storage import location

    path = location(cfg.data.shards) / "spm.model"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: data.shards must be a dataset made by dist-train preprocess "
                                "(with its vocabulary stage on)")
    sp = load_vocab(path.read_bytes())
    return Vocab(str(path), sp.get_piece_size(), sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id(MASK_PIECE))


def caption_group(md: dict[str, Any]) -> str:
    """Which captions translate each other: the group the source declared (`translation_group`:
    a table's --group-column or --group-by image, Multi30K's parallel lines, ...); else the fact a
    benchmark caption says; for machine translations (of a caption without a group), their source
    caption; otherwise the caption itself (a group of one)."""
    declared = md.get("translation_group")
    if declared:
        return "group:" + str(declared)
    meta = md.get("meta") or {}
    if "said" in meta:
        from dist_train.data.world.dataset import translation_group

        return "world:" + translation_group(meta)
    source = (md.get("provenance") or {}).get("source_caption_id")
    return "caption:" + (source or md["caption_id"])


GROUPS_HOW_TO = ("declare translation groups when packing it: `dist-train pack table --group-by image` (the captions "
                 "of one image in distinct languages translate each other) or `--group-column NAME`; coco: "
                 "--group-by image or a translation_group field; img2dataset: --group-field NAME; multi30k groups "
                 "by line (see docs/sources.md)")


def translation_groups_problem(groups: Sequence[str], languages: Sequence[str]) -> str | None:
    """Why a split's captions cannot be evaluated for sentence translation (no group holds captions
    of two languages, so no caption has a translation to find), or None when at least one can."""
    languages_of: dict[str, set[str]] = {}
    for group, language in zip(groups, languages):
        languages_of.setdefault(group, set()).add(language)
    if any(len(langs) > 1 for langs in languages_of.values()):
        return None
    if not groups:
        return "it has no captions"
    if len(languages_of) == len(groups):  # every caption alone in its group
        return f"it declares no translation groups ({len(groups)} captions, each a group of its own)"
    found = sorted({lang for langs in languages_of.values() for lang in langs})
    return (f"each of its {len(languages_of)} translation groups holds captions of one language only "
            f"(languages: {', '.join(found)})")


def read_split_groups(root: str | Path, split: str) -> tuple[list[str], list[str]]:
    """The translation group (`caption_group`) and language of every caption of a split, from the
    samples' `.json` members only (images and tokens are not read)."""
    import json
    import tarfile

    from dist_train.data.shards import list_finished_shards

    tars = list_finished_shards(root, split)
    if not tars:
        raise FileNotFoundError(f"no finished shards for split {split!r} under {root}")
    groups, languages = [], []
    for tar in tars:
        with tar.open("rb") as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".json") and "." not in member.name[:-5]:
                    md = json.loads(archive.extractfile(member).read())
                    groups.append(caption_group(md))
                    languages.append(md["language"])
    return groups, languages


def check_translation_groups(root: str | Path, split: str, what: str = "sentence translation",
                             groups: Sequence[str] | None = None, languages: Sequence[str] | None = None) -> None:
    """Raise ConfigError (one line, naming the fix) when `split` of the dataset at `root` has no two
    captions in distinct languages that translate each other: `what` could not be evaluated on it."""
    from dist_train.config import ConfigError

    if groups is None or languages is None:
        try:
            groups, languages = read_split_groups(root, split)
        except FileNotFoundError as exc:
            raise ConfigError(f"{what} is evaluated on split {split!r}, but {exc}") from None
    problem = translation_groups_problem(list(groups), list(languages))
    if problem is not None:
        raise ConfigError(f"cannot evaluate {what} on split {split!r} of {root}: {problem}; {GROUPS_HOW_TO}")


def feature_dim(shards: str | Path, split: str) -> int:
    """The size of the precomputed image features of a split (its first sample's), or ConfigError when the
    dataset has none (preprocessed without its features stage) or the split is empty."""
    import io

    import numpy as np

    from dist_train.config import ConfigError
    from dist_train.data.shards import iter_shard, list_finished_shards

    for tar in list_finished_shards(shards, split):
        for raw in iter_shard(tar):
            if "features.npy" not in raw:
                raise ConfigError(f"data.shards = {str(shards)!r}: samples have no image features; "
                                  "preprocess with features.enabled=true")
            return int(np.load(io.BytesIO(raw["features.npy"]), allow_pickle=False).shape[-1])
    raise ConfigError(f"data.shards = {str(shards)!r}: no {split} samples")


def build_stream(cfg: TrainConfig, vocab: Vocab, split: str, rank: int, world_size: int, batch_size: int,
                 num_workers: int, languages: list[str] | None = None) -> ShardStream:
    d = cfg.data
    return ShardStream(d.shards, split, batch_size, rank=rank, world_size=world_size, num_workers=num_workers,
                       seed=cfg.seed, shuffle_buffer=d.shuffle_buffer, image_size=d.image_size,
                       max_tokens=d.max_tokens, resampled=d.resampled, language_temperature=d.language_temperature,
                       languages=languages, special_ids=(vocab.pad_id, vocab.bos_id, vocab.eos_id),
                       translation_group=caption_group, image_features=d.image_features,
                       captions_per_image=d.captions_per_image, caption_languages=d.caption_languages or None)


def build_train_loader(cfg: TrainConfig, vocab: Vocab, rank: int, world_size: int) -> TrainLoader:
    stream = build_stream(cfg, vocab, cfg.data.split, rank, world_size, cfg.data.batch_size, cfg.data.num_workers)
    return TrainLoader(stream, cfg.data.num_workers)
