"""One input shard on its way through the preprocessing stages.

The unit of work is a whole shard, as in img2dataset: each input shard becomes exactly one output
shard of the same name, written atomically, so a rerun after a crash skips finished shards and can
neither duplicate nor lose samples, and no stage needs an all-to-all shuffle to regroup rows.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dist_train.data.schema import Sample


@dataclass
class Row:
    """One sample and what the stages attach to it."""

    sample: Sample
    input_index: int  # index of the record in the packer's input (kept through every stage)
    order: int = 0  # 0 for the input caption, 1.. for translations made from it
    tokens: np.ndarray | None = None
    features: np.ndarray | None = None


class StageCounts:
    """Rows in, out and rejected per stage and language; `added` counts rows a stage created."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, collections.Counter]] = {}

    def add(self, stage: str, language: str, what: str, n: int = 1) -> None:
        self.counts.setdefault(stage, {}).setdefault(language, collections.Counter())[what] += n

    def to_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        return {stage: {lang: dict(c) for lang, c in sorted(per_lang.items())}
                for stage, per_lang in self.counts.items()}


@dataclass
class ShardWork:
    split: str
    index: int
    input_tar: str
    input_start: int
    input_end: int
    # caption_id -> languages to translate it into (augmentation), chosen by the driver over the whole split
    augment_plan: dict[str, list[str]] = field(default_factory=dict)
    query_languages: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    stages: StageCounts = field(default_factory=StageCounts)
    read: int = 0
    source_errors: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # what the stages used (translator name, feature network)

    def reject(self, stage: str, reason: str, detail: str, *, key: str, caption_id: str, language: str,
               input_index: int) -> None:
        self.rejects.append({
            "key": key, "caption_id": caption_id, "language": language, "split": self.split,
            "stage": stage, "reason": reason, "detail": detail[:500], "input_index": input_index,
            "shard": f"{self.split}-{self.index:06d}",
        })
        self.stages.add(stage, language, "rejected")

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(payload: bytes) -> "ShardWork":
        return pickle.loads(payload)
