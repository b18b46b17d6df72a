"""Evaluation of the multimodal translation model (`MMTModel`, model "mmt"): corpus sacreBLEU and METEOR of
its translations of a test split, as Multi30K results are reported.

The protocol, for a source language s and a target language t (default: the run's
`objective.source_language` / `target_language`, en -> de):

* one segment per image of the split that has a caption in s and one in t, in first-seen (shard) order;
  images lacking either are skipped and counted;
* the source is the image's FIRST caption in s (shard order), encoded exactly as training encodes it
  (`pad_tokens`: BOS ... EOS, cut at the run's `data.max_tokens`), with the image's precomputed features
  when the model reads them (`visual_context`);
* its references are every caption of the image in t (written independently of the source: another
  wording of the same fact) plus the source caption's stored exact translation into t (`meta.translations`,
  made by `dist-train preprocess` with `translate.query_splits`) when there is one; duplicates count once,
  so a segment has one or more references and sacreBLEU's signature says ``nrefs:N`` or ``nrefs:var``;
* decoding is the project's `beam_search` with the run's `beam_size` (12) and `length_penalty` (1.0);
  several checkpoints decode as one ensemble (`ensemble_step`: the mean of their probabilities per step,
  as fairseq's EnsembleModel);
* scores come from `dist_train.eval.generation_metrics.generation_scores`: sacreBLEU (0..100, raw detokenised
  text, with its signature), METEOR 1.5 (pycocoevalcap's jar, None with the reason without Java), and the
  COCO-style BLEU-4, ROUGE-L and CIDEr.

`evaluate_translation` writes OUT/metrics.json, OUT/report.md and TensorBoard summaries in OUT/tb, as the
other evaluations do.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dist_train.eval.embed import SplitCaptions
from dist_train.models.beam_search import beam_search, ensemble_step, eval_mode
from dist_train.models.mmt import MMTModel
from dist_train.models.text_batch import pad_tokens

log = logging.getLogger(__name__)

DEFAULTS = {"source_language": "en", "target_language": "de", "beam_size": 12, "length_penalty": 1.0}
SCORES = (("sacreBLEU", "sacrebleu", 1), ("METEOR", "meteor", 100), ("BLEU-4", "bleu4", 100),
          ("ROUGE-L", "rouge_l", 100), ("CIDEr", "cider", 100))  # report columns: name, key, scale


@dataclass
class TranslationPair:
    """One segment: an image's source caption (token ids without BOS/EOS, and text) and its references."""

    image_id: str
    source_tokens: np.ndarray
    source_text: str
    references: list[str]


def translation_pairs(captions: SplitCaptions, source: str, target: str) -> list[TranslationPair]:
    """The split's segments for `source` -> `target` (see the module docstring), one per image that has a
    caption in both, in first-seen order."""
    from dist_train.eval.run import translations_of

    if source == target:
        raise ValueError(f"source and target language are both {source!r}")
    firsts: dict[str, int] = {}  # image -> index of its first source caption
    targets: dict[str, list[str]] = {}
    order: dict[str, None] = {}
    for i, (lang, image_id, text) in enumerate(zip(captions.languages, captions.image_ids, captions.texts)):
        order.setdefault(image_id)
        if lang == source:
            firsts.setdefault(image_id, i)
        elif lang == target and text.strip():
            targets.setdefault(image_id, []).append(text)
    pairs = []
    for image_id in order:
        i = firsts.get(image_id)
        if i is None or image_id not in targets:
            continue
        stored = translations_of(captions.metas[i]).get(target)
        references = list(dict.fromkeys([*targets[image_id], *([stored] if stored else [])]))
        pairs.append(TranslationPair(image_id, captions.tokens[i], captions.texts[i], references))
    if len(pairs) < len(order):
        log.info("%s->%s: %d of %d images skipped (no caption in %s or in %s)", source, target,
                 len(order) - len(pairs), len(order), source, target)
    return pairs


def _check_ensemble(models: Sequence[MMTModel], names: Sequence[str] | None = None) -> None:
    """Models decode together only when their token ids mean the same: same special ids and vocabularies."""
    if not models:
        raise ValueError("no model to translate with")
    names = list(names) if names is not None else [f"ensemble model {i}" for i in range(len(models))]
    keys = ("pad_id", "bos_id", "eos_id", "source_vocab_size", "target_vocab_size")
    first = {k: getattr(models[0].config, k) for k in keys}
    for name, model in zip(names[1:], models[1:]):
        found = {k: getattr(model.config, k) for k in keys}
        if found != first:
            differ = ", ".join(f"{k} {found[k]}, not {first[k]}" for k in keys if found[k] != first[k])
            raise ValueError(f"{name} cannot decode in an ensemble with {names[0]}: {differ}")


@torch.no_grad()
def translate(models: Sequence[MMTModel], sources: Sequence[np.ndarray], features: torch.Tensor | None, *,
              max_tokens: int, beam_size: int, length_penalty: float, batch_size: int = 64,
              device: torch.device | str | None = None, max_len: int | None = None,
              progress: bool = False) -> list[list[int]]:
    """Beam-search translations (token ids without BOS/EOS) of `sources` (ids without BOS/EOS), encoded as
    training encodes them (`pad_tokens` with `max_tokens`). `features [N, D]`: the sources' image features,
    given to the models that read them (`visual_context`). Several models decode as one ensemble
    (`ensemble_step`); one model gives exactly what its `translate` gives. `device`: where the models are
    (default: the first model's); `max_len`: default the first model's `config.max_len`."""
    from tqdm import tqdm

    models = list(models)
    _check_ensemble(models)
    if features is not None and len(features) != len(sources):
        raise ValueError(f"{len(features)} feature rows for {len(sources)} sources")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    c = models[0].config
    device = torch.device(device) if device is not None else next(models[0].parameters()).device
    max_len = c.max_len if max_len is None else max_len
    if len(models) == 1:
        step = models[0].decode_step
    else:
        step = ensemble_step([m.decode_step for m in models])
    out: list[list[int]] = []
    starts = range(0, len(sources), batch_size)
    with ExitStack() as modes:
        for model in models:
            modes.enter_context(eval_mode(model))
        for start in tqdm(starts, desc="translating", unit="batch", disable=not progress):
            rows = list(sources[start:start + batch_size])
            src = pad_tokens(rows, max_tokens, c.bos_id, c.eos_id, c.pad_id).to(device)
            feats = None if features is None else features[start:start + batch_size].to(device)
            states = [m.decode_state(src, feats if m.config.visual_context else None) for m in models]
            state = states[0] if len(models) == 1 else tuple(states)
            out += beam_search(step, state, batch_size=len(rows), bos_id=c.bos_id, eos_id=c.eos_id,
                               beam_size=beam_size, max_len=max_len, length_penalty=length_penalty).tokens
    return out


def _cell(text: str) -> str:
    """Text for a Markdown table cell: control characters (an untrained model decodes stray bytes) escaped."""
    from dist_train.data.verify import printable

    return printable(text).replace("|", "\\|") or " "


def scores_markdown(result: dict[str, Any]) -> str:
    """The scores as a Markdown table (METEOR, BLEU-4, ROUGE-L and CIDEr x100; sacreBLEU is 0..100)."""
    cells = ["-" if result.get(key) is None else f"{scale * result[key]:.1f}" for _, key, scale in SCORES]
    return "\n".join([f"| pair | sentences | {' | '.join(name for name, _, _ in SCORES)} |",
                      "|---|---:|" + "---:|" * len(SCORES),
                      f"| {result['pair']} | {result['sentences']} | {' | '.join(cells)} |"])


def samples_markdown(samples: Sequence[dict[str, Any]]) -> str:
    """Sample translations beside their source and references, as a Markdown table."""
    lines = ["| source | translation | references |", "|---|---|---|"]
    lines += [f"| {_cell(s['source'])} | {_cell(s['hypothesis'])} | {' / '.join(_cell(r) for r in s['references'])} |"
              for s in samples]
    return "\n".join(lines)


def evaluate_translation(checkpoints: Sequence, shards, out, split: str = "test", source: str | None = None,
                         target: str | None = None, beam_size: int | None = None, length_penalty: float | None = None,
                         batch_size: int = 64, meteor: bool = True, samples: int = 10,
                         progress: bool = False) -> dict[str, Any]:
    """Translation scores of one MMT checkpoint (a run's checkpoints, a step folder, the run folder or an
    export), or of several decoded as one ensemble, on `split` of the preprocessed dataset `shards` (see the
    module docstring). The first checkpoint's run gives the defaults of the languages, beam size, length
    penalty and source length. Writes OUT/metrics.json, OUT/report.md and TensorBoard summaries (OUT/tb)."""
    import json

    from dist_train.eval.embed import read_split_captions, read_split_features
    from dist_train.eval.generation_metrics import generation_scores
    from dist_train.eval.run import _step_of, check_vocabulary
    from dist_train.preprocess.vocab import load_vocab
    from dist_train.storage import location
    from dist_train.train.export import load_model, model_name
    from dist_train.train.tensorboard import TensorBoardLogger

    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("no checkpoint to evaluate")
    if beam_size is not None and (not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1):
        raise ValueError(f"beam size must be a positive integer, got {beam_size!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ValueError(f"samples must be an integer >= 0, got {samples!r}")
    for checkpoint in checkpoints:  # before any weights are read
        name = model_name(checkpoint)
        if name is not None and name != "mmt":
            raise ValueError(f"{checkpoint} holds a {name} model, not a translation model (model: mmt)")
    root, out = location(shards), Path(out)
    models, configs = [], []
    for checkpoint in checkpoints:
        model, config = load_model(checkpoint)
        if config["model"] != "mmt":
            raise ValueError(f"{checkpoint} holds a {config['model']} model, not a translation model (model: mmt)")
        check_vocabulary(config, root, checkpoint)
        models.append(model)
        configs.append(config)
    _check_ensemble(models, [str(c) for c in checkpoints])
    objective = {**DEFAULTS, **{k: v for k, v in (configs[0].get("objective") or {}).items() if v is not None}}
    source = source or objective["source_language"]
    target = target or objective["target_language"]
    beam_size = objective["beam_size"] if beam_size is None else beam_size
    length_penalty = float(objective["length_penalty"] if length_penalty is None else length_penalty)
    max_tokens = (configs[0].get("data") or {}).get("max_tokens", 32)  # TrainConfig's data.max_tokens default

    captions = read_split_captions(root, split)
    languages = sorted(set(captions.languages))
    for role, lang in (("source", source), ("target", target)):
        if lang not in languages:
            raise ValueError(f"{role} language {lang!r}: the {split} split of {root} has captions in "
                             f"{', '.join(languages)}")
    pairs = translation_pairs(captions, source, target)
    if not pairs:
        raise ValueError(f"no {source}->{target} pair in the {split} split of {root}: no image has captions in both")
    skipped = len(set(captions.image_ids)) - len(pairs)
    features = None
    if any(m.config.visual_context for m in models):
        features = read_split_features(root, split, [p.image_id for p in pairs])
        for checkpoint, model in zip(checkpoints, models):
            if model.config.visual_context and model.config.feature_dim != features.shape[1]:
                raise ValueError(f"{checkpoint} reads {model.config.feature_dim}-d image features, the {split} "
                                 f"split of {root} has {features.shape[1]}-d ones")
    tokens = translate(models, [p.source_tokens for p in pairs], features, max_tokens=max_tokens,
                       beam_size=beam_size, length_penalty=length_penalty, batch_size=batch_size, progress=progress)
    sp = load_vocab((root / "spm.model").read_bytes())
    hypotheses = [sp.decode(ids) for ids in tokens]
    references = [p.references for p in pairs]
    scores = generation_scores(hypotheses, references, target, meteor=meteor)
    scores.pop("n")
    result = {"pair": f"{source}-{target}", "source_language": source, "target_language": target, "split": split,
              "sentences": len(pairs), "skipped_images": skipped,
              "references_per_sentence": sum(map(len, references)) / len(references), **scores}
    shown = [{"image_id": p.image_id, "source": p.source_text, "hypothesis": h, "references": p.references}
             for p, h in zip(pairs[:samples], hypotheses)]
    metrics = {"translation": result, "samples": shown,
               "meta": {"checkpoints": [str(c) for c in checkpoints], "ensemble": len(models), "shards": str(root),
                        "split": split, "beam_size": beam_size, "length_penalty": length_penalty,
                        "max_tokens": max_tokens, "max_len": models[0].config.max_len}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=float))
    names = ", ".join(map(str, checkpoints))
    what = names if len(models) == 1 else f"an ensemble of {len(models)} ({names})"
    report = [f"# Translation {source} -> {target}: {what} on {split}", "",
              f"{len(pairs)} sentences ({skipped} images without a caption in both languages skipped), "
              f"{result['references_per_sentence']:.2f} references each; beam {beam_size}, length penalty "
              f"{length_penalty:g}. METEOR, BLEU-4, ROUGE-L and CIDEr x100.", "", scores_markdown(result), "",
              f"sacreBLEU: {result['sacrebleu_signature']}", "", f"METEOR: {result['meteor_modules']}"]
    if shown:
        report += ["", "## Samples", "", samples_markdown(shown)]
    (out / "report.md").write_text("\n".join(report) + "\n")
    tb = TensorBoardLogger(out / "tb", enabled=True)
    step = _step_of(checkpoints[0])
    tb.scalars({f"translation/{key}": result[key] for key in ("sacrebleu", "meteor", "bleu4", "cider")
                if result[key] is not None}, step)
    tb.text(f"translation/{source}-{target}", "\n\n".join([
        scores_markdown(result), f"sacreBLEU: {result['sacrebleu_signature']}", f"METEOR: {result['meteor_modules']}",
        *([samples_markdown(shown)] if shown else [])]), step)
    tb.close()
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """The headline: direction, split, size, sacreBLEU and METEOR (x100), and sacreBLEU's signature."""
    r, ensemble = metrics["translation"], metrics["meta"]["ensemble"]
    size = f"{r['sentences']} sentences" + (f", ensemble of {ensemble}" if ensemble > 1 else "")
    meteor = "METEOR not computed" if r["meteor"] is None else f"METEOR {100 * r['meteor']:.1f}"
    return (f"{r['source_language']}->{r['target_language']} on {r['split']} ({size}): BLEU {r['sacrebleu']:.1f}, "
            f"{meteor} (sacreBLEU {r['sacrebleu_signature']})")


__all__ = ["TranslationPair", "evaluate_translation", "samples_markdown", "scores_markdown", "summary_line",
           "translate", "translation_pairs"]
