"""Embedding a split's captions in batches, data-parallel over the ranks of a running process group.

Every rank embeds an equal, contiguous share (the last share padded, so all ranks run the same
number of forward passes, which ZeRO-3 needs); rank 0 gathers the rows. Without a process group the
one process embeds everything.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from dist_train.data.shards import iter_shard, list_finished_shards
from dist_train.models.text_batch import pad_tokens


@dataclass
class SplitCaptions:
    keys: list[str]
    tokens: list[np.ndarray]
    languages: list[str]
    groups: list[str]
    image_ids: list[str]
    metas: list[dict[str, Any]]
    texts: list[str] = field(default_factory=list)  # the captions themselves


def read_split_captions(root: str | Path, split: str, group_of: Callable[[dict], str] | None = None) -> SplitCaptions:
    """Token ids and labels of every caption of a split, in shard order (images are not decoded)."""
    if group_of is None:
        from dist_train.train.data import caption_group as group_of  # noqa: N813
    out = SplitCaptions([], [], [], [], [], [])
    tars = list_finished_shards(root, split)
    if not tars:
        raise FileNotFoundError(f"no finished shards for split {split!r} under {root}")
    for tar in tars:
        for raw in iter_shard(tar):
            if "tokens.npy" not in raw:
                raise ValueError(f"{tar}: samples have no token ids; run dist-train preprocess with tokenize on")
            md = json.loads(raw["json"])
            out.keys.append(raw["__key__"])
            out.tokens.append(np.load(io.BytesIO(raw["tokens.npy"]), allow_pickle=False))
            out.languages.append(md["language"])
            out.groups.append(group_of(md))
            out.image_ids.append(md["image_id"])
            out.metas.append(md)
            out.texts.append(raw["txt"].decode("utf-8"))
    return out


@torch.no_grad()
def embed_batches(forward: Callable[[Any], torch.Tensor], n: int, make_batch: Callable[[list[int]], Any],
                  batch_size: int) -> np.ndarray | None:
    """Embeddings of items 0..n-1 on rank 0 (None elsewhere): each rank embeds an equal share, built
    by `make_batch(indices)`; the last batches are padded so every rank runs as many forward passes."""
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    share = -(-n // world)
    mine = list(range(rank * share, min(n, (rank + 1) * share)))
    steps = -(-share // batch_size)
    rows: list[torch.Tensor] = []
    for s in range(steps):
        chunk = mine[s * batch_size:(s + 1) * batch_size]
        emb = forward(make_batch(chunk or [n - 1])).float()  # keep step counts equal across ranks
        rows.append(emb[: len(chunk)])
    local = torch.cat(rows) if rows else torch.zeros(0)
    if not distributed or world == 1:
        return local.cpu().numpy()
    dim = torch.tensor([local.shape[1] if local.dim() == 2 and local.shape[0] else 0], device=local.device)
    dist.all_reduce(dim, op=dist.ReduceOp.MAX)
    padded = torch.zeros(share, int(dim.item()), device=local.device)
    if local.shape[0]:
        padded[: local.shape[0]] = local
    gathered = [torch.zeros_like(padded) for _ in range(world)] if rank == 0 else None
    dist.gather(padded, gathered, dst=0)
    if rank != 0:
        return None
    return torch.cat(gathered)[:n].cpu().numpy()


def embed_tokens(forward: Callable[[torch.Tensor], torch.Tensor], tokens: list[np.ndarray], vocab: Any,
                 max_tokens: int, batch_size: int) -> np.ndarray | None:
    """Caption embeddings (rank 0 gets them all; see `embed_batches`)."""
    return embed_batches(forward, len(tokens), lambda idx: pad_tokens([tokens[i] for i in idx], max_tokens,
                                                                       vocab.bos_id, vocab.eos_id, vocab.pad_id),
                         batch_size)


def _one_per_image(root: str | Path, split: str, image_ids: list[str], what: str, read: Callable[[str, dict], Any]) -> list:
    """`read(tar, raw)` of the first sample of each image in `image_ids`, in that order."""
    wanted = {image_id: i for i, image_id in enumerate(image_ids)}
    found: list[Any] = [None] * len(image_ids)
    for tar in list_finished_shards(root, split):
        for raw in iter_shard(tar):
            i = wanted.get(json.loads(raw["json"])["image_id"])
            if i is not None and found[i] is None:
                found[i] = read(str(tar), raw)
    missing = [image_ids[i] for i, item in enumerate(found) if item is None]
    if missing:
        raise ValueError(f"{split}: no {what} found for {len(missing)} image ids (first: {missing[0]})")
    return found


def read_split_images(root: str | Path, split: str, image_ids: list[str], size: int) -> torch.Tensor:
    """The split's images in the order of `image_ids`, resized and centre-cropped to `size`, normalised."""
    from PIL import Image

    from dist_train.models.augment import eval_transform

    def read(tar: str, raw: dict) -> torch.Tensor:
        image = Image.open(io.BytesIO(raw["jpg"])).convert("RGB")
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)

    pixels = _one_per_image(root, split, image_ids, "image", read)
    return torch.cat([eval_transform(p[None], size=size) for p in pixels])


def read_split_pixels(root: str | Path, split: str, image_ids: list[str], size: int) -> torch.Tensor:
    """The split's images in the order of `image_ids` exactly as the training loader gives them: uint8
    `[N, 3, size, size]`, shorter side resized to `size` and centre-cropped (no normalisation)."""
    from PIL import Image

    from dist_train.train.loader import _resize_center_crop

    def read(tar: str, raw: dict) -> torch.Tensor:
        image = _resize_center_crop(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"), size)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)

    return torch.stack(_one_per_image(root, split, image_ids, "image", read))


def read_split_features(root: str | Path, split: str, image_ids: list[str]) -> torch.Tensor:
    """The split's precomputed image features (`<key>.features.npy`) in the order of `image_ids`, float32."""
    def read(tar: str, raw: dict) -> np.ndarray:
        if "features.npy" not in raw:
            raise ValueError(f"{tar}: samples have no image features; run dist-train preprocess with "
                             "features.enabled=true")
        return np.load(io.BytesIO(raw["features.npy"]), allow_pickle=False)

    rows = _one_per_image(root, split, image_ids, "features", read)
    return torch.from_numpy(np.stack(rows).astype(np.float32))
