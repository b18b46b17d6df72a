"""`dist-train eval`: a trained model (DeepSpeed checkpoints or an export) measured on a test split.

Writes OUT/metrics.json (every figure beside its chance), OUT/report.md and the language-pair heatmap
of sentence translation. Works on one process without DeepSpeed; the training engine calls the
same metric functions during training.
"""

from __future__ import annotations

import collections
import json
import logging
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dist_train.eval.embed import embed_batches, embed_tokens, read_split_captions, read_split_images
from dist_train.eval.report import save_pair_heatmap, write_markdown_report
from dist_train.eval.retrieval import cross_modal_recall, sentence_translation

log = logging.getLogger(__name__)


def load_model(checkpoint: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """An exported folder (model.safetensors + config.yaml) or a run's DeepSpeed checkpoints folder."""
    path = Path(checkpoint)
    if (path / "model.safetensors").is_file():
        from dist_train.train.export import load_exported

        return load_exported(path)
    if (path / "latest").is_file() or path.name.startswith("step"):
        import os
        import tempfile

        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        from dist_train.train.export import export, load_exported

        checkpoints, tag = (path, None) if (path / "latest").is_file() else (path.parent, path.name)
        with tempfile.TemporaryDirectory() as tmp:
            export(checkpoints, tmp, tag=tag)
            return load_exported(tmp)
    raise FileNotFoundError(f"{path} is neither an exported model (model.safetensors) nor a checkpoints folder "
                            "(with a 'latest' pointer)")


def scripts_of(captions: list[str]) -> set[str]:
    """The Unicode scripts a language's captions are written in (LATIN, CYRILLIC, CJK, HANGUL, ...)."""
    counts: collections.Counter = collections.Counter()
    for text in captions:
        for ch in text:
            if ch.isalpha():
                counts[unicodedata.name(ch, "UNKNOWN").split()[0]] += 1
    total = sum(counts.values())
    return {script for script, n in counts.items() if n >= 0.05 * total}  # ignore stray foreign letters


def evaluate(checkpoint: str | Path, shards: str | Path, out: str | Path, split: str = "test",
             batch_size: int = 128, human_languages: list[str] | None = None) -> dict[str, Any]:
    model, config = load_model(checkpoint)
    root, out = Path(shards), Path(out)
    mc = config["model_config"]
    vocab = type("V", (), {"bos_id": mc["bos_id"], "eos_id": mc["eos_id"], "pad_id": mc["pad_id"]})
    max_tokens = config.get("data", {}).get("max_tokens", mc.get("max_length", 64))
    image_size = config.get("data", {}).get("image_size", 224)
    captions = read_split_captions(root, split)

    with torch.no_grad():
        text_text = embed_tokens(lambda t: model.encode_text(t)["text_text"], captions.tokens, vocab, max_tokens,
                                 batch_size)
        result = sentence_translation(text_text, captions.groups, captions.languages)
        metrics: dict[str, Any] = {"sentence_translation": result.to_metrics()}
        # pairs of languages that share no script: no written word in common
        metrics["sentence_translation"]["disjoint_script_pairs"] = _disjoint_average(
            metrics["sentence_translation"]["by_language_pair"], _caption_scripts(root, split))
        if getattr(model, "has_images", False):
            image_ids = sorted(set(captions.image_ids))
            index = {image_id: i for i, image_id in enumerate(image_ids)}
            images = read_split_images(root, split, image_ids, image_size)
            image_emb = embed_batches(lambda x: model.encode_image(x)["image_cross"], len(images),
                                      lambda idx: images[idx], batch_size)
            text_cross = embed_tokens(lambda t: model.encode_text(t)["text_cross"], captions.tokens, vocab,
                                      max_tokens, batch_size)
            cross = cross_modal_recall(image_emb, text_cross, [index[i] for i in captions.image_ids],
                                       captions.languages, human_languages=human_languages)
            metrics["cross_modal"] = cross.to_metrics()
        else:
            metrics["cross_modal"] = {"skipped": "the model has no image network (text-only)"}
    out.mkdir(parents=True, exist_ok=True)
    pairs = metrics["sentence_translation"]["by_language_pair"]
    heatmap = save_pair_heatmap(pairs["value"], pairs["languages"], out / "sentence_translation_pairs.png",
                                title="Sentence translation by retrieval",
                                chance=metrics["sentence_translation"]["retrieved_positives"]["chance"])
    metrics["meta"] = {"checkpoint": str(checkpoint), "shards": str(root), "split": split,
                       "sentences": len(captions.keys), "languages": sorted(set(captions.languages))}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    report_metrics = {k: v for k, v in metrics.items() if k != "meta"}
    write_markdown_report(report_metrics, out / "report.md", title=f"Evaluation of {checkpoint}",
                          images={"sentence_translation": heatmap.name})
    return metrics


def _caption_scripts(root: Path, split: str) -> dict[str, set[str]]:
    from dist_train.data.shards import iter_shard, list_finished_shards

    texts: dict[str, list[str]] = collections.defaultdict(list)
    for tar in list_finished_shards(root, split):
        for raw in iter_shard(tar):
            texts[json.loads(raw["json"])["language"]].append(raw["txt"].decode("utf-8"))
    return {lang: scripts_of(t) for lang, t in texts.items()}


def _disjoint_average(pairs: dict[str, Any], scripts: dict[str, set[str]]) -> dict[str, Any]:
    """Mean over ordered language pairs that share no script, with its chance."""
    langs = pairs["languages"]
    values, chances = [], []
    for i, a in enumerate(langs):
        for j, b in enumerate(langs):
            if a != b and not (scripts.get(a, set()) & scripts.get(b, set())):
                if pairs["value"][i][j] is not None:
                    values.append(pairs["value"][i][j])
                    chances.append(pairs["chance"][i][j])
    if not values:
        return {"value": None, "chance": None, "pairs": 0}
    return {"value": float(np.mean(values)), "chance": float(np.mean(chances)), "pairs": len(values)}


def summary_line(metrics: dict[str, Any]) -> str:
    st = metrics["sentence_translation"]
    overall, disjoint = st["retrieved_positives"], st["disjoint_script_pairs"]
    parts = [f"sentence translation {overall['value']:.1f}% (chance {overall['chance']:.1f})"]
    if disjoint["value"] is not None:
        parts.append(f"disjoint scripts {disjoint['value']:.1f}% (chance {disjoint['chance']:.1f})")
    cm = metrics.get("cross_modal", {})
    if "average_mean_recall" in cm:
        parts.append(f"cross-modal mean recall {cm['average_mean_recall']['value']:.1f} "
                     f"(chance {cm['average_mean_recall']['chance']:.1f})")
    return "; ".join(parts)


__all__ = ["evaluate", "load_model", "scripts_of", "summary_line", "yaml"]
