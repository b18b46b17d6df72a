"""What a finished dataset folder carries for readers other than dist_train: per split a `sizes.json`
(webdataset's and open_clip's sample counts per tar, so `--train-num-samples` is not needed) and one
Parquet table of all its manifests (`DIR/<split>.parquet`, which pandas, duckdb and `pyarrow.dataset`
read directly: the split folder itself mixes tars and manifests), and a dataset card `README.md` that
says what the folder holds and how to load it with webdataset, Hugging Face `datasets` and open_clip.

Written last by `dist-train pack` and `dist-train preprocess`, from the manifests on disk, after the
summary; a rerun rewrites them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dist_train.storage import location, makedirs

from .shards import (
    MANIFEST_SCHEMA,
    atomic_write_bytes,
    list_finished_shards,
    manifest_path,
    read_manifest,
)

SIZES_FILE = "sizes.json"
CARD_FILE = "README.md"


def _put(path: Path, data: bytes) -> None:
    """Write `data` unless the file already holds it: a rerun that finds nothing to do changes no file."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write_bytes(path, data)


def write_split_index(root: Path, split: str) -> dict[str, int]:
    """`root/<split>/sizes.json` ({tar name: samples}) and `root/<split>.parquet` (the split's manifests as one
    table, in shard order, with a `shard` column); returns the sizes."""
    root = location(root)
    sizes, tables = {}, []
    for t in list_finished_shards(root, split):  # one read of each manifest: a row per sample
        table = read_manifest(manifest_path(t)).replace_schema_metadata(None)
        sizes[t.name] = table.num_rows
        tables.append(table.append_column("shard", pa.array([t.name] * table.num_rows, pa.string())))
    makedirs(root / split)
    _put(root / split / SIZES_FILE, (json.dumps(sizes, indent=2) + "\n").encode())
    schema = MANIFEST_SCHEMA.append(pa.field("shard", pa.string()))
    combined = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
    buf = io.BytesIO()
    pq.write_table(combined, buf)
    _put(root / f"{split}.parquet", buf.getvalue())
    return sizes


def _counts_table(summary: dict[str, Any]) -> str:
    rows = ["| split | shards | samples | languages |", "|---|---:|---:|---|"]
    for split, s in summary.get("splits", {}).items():
        langs = ", ".join(f"{k} {v}" for k, v in s.get("languages", {}).items())
        rows.append(f"| {split} | {s.get('shards', 0)} | {s.get('written', 0)} | {langs} |")
    return "\n".join(rows)


def write_card(root: Path, summary: dict[str, Any], made_by: str) -> None:
    """The dataset card `root/README.md` (Hugging Face's dataset-card layout: YAML header, then prose)."""
    splits = list(summary.get("splits", {}))
    t = summary.get("totals", {})
    languages = sorted(t.get("languages", {}))
    header = ["---", "configs:", "- config_name: default", "  data_files:"]
    header += [f"  - split: {s}\n    path: \"{s}/*.tar\"" for s in splits]
    header += ["language:"] + [f"- {lang}" for lang in languages]
    header += ["task_categories:", "- image-to-text", "- text-to-image", "---"]
    source = summary.get("source") or {}
    first = splits[0] if splits else "train"
    last = max(0, summary.get("splits", {}).get(first, {}).get("shards", 1) - 1)
    pattern = f"{first}/{first}-{{000000..{last:06d}}}.tar"
    # the dataset's own name, not its folder's: a copied or moved dataset keeps its card
    name = source.get("source") if isinstance(source.get("source"), str) else Path(str(root)).name
    text = "\n".join(header) + f"""

# {name}

Images with captions in {len(languages)} language(s), as WebDataset tar shards made by `{made_by}`
(dist_train), from {json.dumps(source.get("source") or source, ensure_ascii=False)}.
{t.get("written", 0)} samples written, {t.get("rejected", 0)} input records rejected (every one with its
reason in `rejects.parquet`); counts, settings and provenance in `summary.json`.

{_counts_table(summary)}

## Layout

- `<split>/<split>-NNNNNN.tar`: one sample per caption: `<key>.jpg` (RGB JPEG), `<key>.txt` (the caption,
  UTF-8) and `<key>.json` (language, image and caption ids, provenance: human, synthetic or machine
  translation, translation group{", and `<key>.tokens.npy`, `<key>.features.npy` from preprocessing" if
  "preprocess" in summary else ""}).
- `<split>/<split>-NNNNNN.parquet`: the shard's manifest, one row per sample in tar order; a shard is
  complete when its manifest exists.
- `<split>/sizes.json`: samples per tar; `<split>.parquet`: the split's manifests as one table.

## Loading it

```python
import webdataset as wds
ds = wds.WebDataset("{pattern}").decode("pil").to_tuple("jpg", "txt", "json")

from datasets import load_dataset
ds = load_dataset("webdataset", data_files={{{", ".join(f'"{s}": "{s}/*.tar"' for s in splits)}}})

import pandas as pd
manifest = pd.read_parquet("{first}.parquet")  # one row per sample
```

open_clip reads the shards with `--train-data '{pattern}' --dataset-type webdataset`
and finds the sample count in `sizes.json`. The schema is documented in dist_train's `docs/schema.md`.
"""
    _put(location(root) / CARD_FILE, text.encode("utf-8"))


def finish_dataset(root: Path, summary: dict[str, Any], made_by: str) -> None:
    """Per-split indexes and the dataset card, for a folder whose summary has just been written."""
    for split in summary.get("splits", {}):
        write_split_index(root, split)
    write_card(root, summary, made_by)
