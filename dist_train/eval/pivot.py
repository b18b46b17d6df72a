"""Evaluation of the visual-pivoting captioner, in the shape of the paper's Table 1.

For a language pair (a, b) and each test image with captions in both, the rows are:

* image -> a: the caption decoded from the image's own features;
* image + b -> a: feedback propagation from the image's pivot, fitted to the image's first caption in
  b, then decoded in a (the second language corrects the visual evidence);
* b -> a: the same from a noise image's pivot (pixels drawn with the training images' mean and std):
  a translation of the caption in b with no image at all;

and the same with a and b swapped. Two baselines show what pivoting adds:

* noise -> a: the caption decoded from the noise pivot without any optimisation (what b -> a starts
  from);
* retrieval b -> a: text-only "translation" by retrieval through the shared visual space: the training
  image whose features make b's decoder explain the given caption best (lowest loss) lends its caption
  in a.

Every hypothesis is scored against ALL references of the target language for its image (BLEU-4,
ROUGE-L, CIDEr, METEOR where Java is installed; `dist_train.eval.generation_metrics`). The given
caption in b is the image's first caption in b in shard order; its references in a never include it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dist_train.eval.generation_metrics import generation_scores
from dist_train.models.text_batch import pad_tokens

log = logging.getLogger(__name__)

ROWS = ("image->{a}", "image+{b}->{a}", "{b}->{a}", "noise->{a}", "retrieval {b}->{a}")


@dataclass
class PivotSettings:
    """Inference settings (the objective's `pivot_*` keys; the paper: lr 0.001 for 20 iterations)."""

    steps: int = 20
    lr: float = 0.001
    optimizer: str = "adam"
    beam_size: int = 5
    length_penalty: float = 1.0
    batch_size: int = 64
    retrieval_candidates: int = 500  # training images the retrieval baseline searches
    seed: int = 0  # the noise images

    @classmethod
    def of_run(cls, objective: dict[str, Any], **overrides: Any) -> "PivotSettings":
        """The settings a run was trained to use (its `objective.pivot_*`, `beam_size`, `length_penalty`),
        with `overrides` (None values ignored) on top."""
        found = {k: objective[f"pivot_{k}"] for k in ("steps", "lr", "optimizer") if f"pivot_{k}" in objective}
        found.update({k: objective[k] for k in ("beam_size", "length_penalty") if k in objective})
        found.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**found)


@dataclass
class ImageCaptions:
    """One test image with its captions per language (token ids and text)."""

    image_id: str
    tokens: dict[str, list[np.ndarray]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)


def group_by_image(captions) -> list[ImageCaptions]:
    """A split's captions (`dist_train.eval.embed.SplitCaptions`) grouped by image, in first-seen order."""
    by_id: dict[str, ImageCaptions] = {}
    for tokens, text, lang, image_id in zip(captions.tokens, captions.texts, captions.languages, captions.image_ids):
        entry = by_id.setdefault(image_id, ImageCaptions(image_id))
        entry.tokens.setdefault(lang, []).append(tokens)
        entry.texts.setdefault(lang, []).append(text)
    return list(by_id.values())


@dataclass
class RetrievalPool:
    """Training images for the retrieval baseline: their encoder features `[M, N, C]` and, per language,
    one caption of each (every image of the pool has a caption in every language)."""

    features: torch.Tensor
    captions: dict[str, list[str]]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield list(range(start, min(n, start + size)))


class PivotEvaluator:
    """Runs the rows of Table 1 for a trained `PivotCaptioner` on one evaluation split."""

    def __init__(self, model, vocab, decode: Callable[[list[int]], str], max_tokens: int,
                 settings: PivotSettings, device: torch.device | None = None):
        self.model = model.eval()
        self.vocab = vocab
        self.decode = decode
        self.max_tokens = max_tokens
        self.s = settings
        self.device = device or next(model.parameters()).device

    def _tokens(self, rows: Sequence[np.ndarray]) -> torch.Tensor:
        v = self.vocab
        return pad_tokens(list(rows), self.max_tokens, v.bos_id, v.eos_id, v.pad_id).to(self.device)

    def _decode(self, features: torch.Tensor, lang: str) -> list[str]:
        hyps = self.model.generate(features, lang, beam_size=self.s.beam_size, length_penalty=self.s.length_penalty,
                                   max_len=self.max_tokens)
        return [self.decode(t) for t in hyps.tokens]

    @torch.no_grad()
    def _pivots(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_pivot(images.to(self.device))

    def _noise(self, n: int, image_size: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.s.seed)
        return torch.cat([self.model.noise_pivot(len(idx), image_size, generator=generator)
                          for idx in _batches(n, self.s.batch_size)])

    def _fit_and_decode(self, z0: torch.Tensor, given: list[np.ndarray], src: str, tgt: str) -> list[str]:
        out: list[str] = []
        for idx in _batches(len(given), self.s.batch_size):
            # the paper's energy: the given caption's cross entropy alone (no attention penalty)
            z = self.model.feedback_propagation(z0[idx], [(src, self._tokens([given[i] for i in idx]))],
                                                steps=self.s.steps, lr=self.s.lr, optimizer=self.s.optimizer,
                                                attention_regularisation=0.0)
            with torch.no_grad():
                out += self._decode(self.model.features_from_pivot(z), tgt)
        return out

    def _decode_pivots(self, z: torch.Tensor, tgt: str) -> list[str]:
        out: list[str] = []
        with torch.no_grad():
            for idx in _batches(len(z), self.s.batch_size):
                out += self._decode(self.model.features_from_pivot(z[idx]), tgt)
        return out

    @torch.no_grad()
    def _retrieve(self, given: list[np.ndarray], src: str, tgt: str, pool: "RetrievalPool") -> list[str]:
        """Each given caption's lowest-loss training image under `src`'s decoder; that image's caption in tgt."""
        features, captions = pool.features, pool.captions[tgt]
        best = []
        for i, tokens in enumerate(given):
            scores = []
            for idx in _batches(len(features), self.s.batch_size):
                batch = self._tokens([tokens] * len(idx))
                scores.append(self.model.caption_loss(features[idx], batch, src, reduction="none",
                                                      attention_regularisation=0.0))
            best.append(captions[int(torch.cat(scores).argmin())])
        return best

    def evaluate_pair(self, a: str, b: str, images: list[ImageCaptions], pixels: torch.Tensor, image_size: int,
                      pool: "RetrievalPool | None" = None, meteor: bool = True,
                      meteor_scorers: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every row in both directions for the images that have captions in a and b. `pixels`: those
        images, normalised, in the order of `images`; `pool`: training images for the retrieval
        baseline (skipped without)."""
        keep = [i for i, im in enumerate(images) if im.tokens.get(a) and im.tokens.get(b)]
        if not keep:
            raise ValueError(f"no evaluation image has captions in both {a} and {b}")
        images = [images[i] for i in keep]
        pixels = pixels[keep]
        z_image = torch.cat([self._pivots(pixels[idx]) for idx in _batches(len(images), self.s.batch_size)])
        z_noise = self._noise(len(images), image_size)
        rows: dict[str, Any] = {}
        samples: dict[str, list[dict[str, Any]]] = {}
        for tgt, src in ((a, b), (b, a)):
            refs = [im.texts[tgt] for im in images]
            given = [im.tokens[src][0] for im in images]
            given_text = [im.texts[src][0] for im in images]
            hyps = {
                f"image->{tgt}": self._decode_pivots(z_image, tgt),
                f"image+{src}->{tgt}": self._fit_and_decode(z_image, given, src, tgt),
                f"{src}->{tgt}": self._fit_and_decode(z_noise, given, src, tgt),
                f"noise->{tgt}": self._decode_pivots(z_noise, tgt),
            }
            if pool is not None:
                hyps[f"retrieval {src}->{tgt}"] = self._retrieve(given, src, tgt, pool)
            for name, hyp in hyps.items():
                rows[name] = generation_scores(hyp, refs, tgt, meteor=meteor,
                                               meteor_scorer=(meteor_scorers or {}).get(tgt))
                log.info("%s: BLEU-4 %.3f, CIDEr %.3f", name, rows[name]["bleu4"], rows[name]["cider"])
            samples[f"{src}->{tgt}"] = [
                {"image_id": images[i].image_id, "given": given_text[i], "references": refs[i],
                 **{name: hyp[i] for name, hyp in hyps.items()}} for i in range(min(5, len(images)))]
        return {"pair": [a, b], "images": len(images), "rows": rows, "samples": samples,
                "settings": vars(self.s).copy()}


def table_markdown(result: dict[str, Any]) -> str:
    """The pair's rows as a Markdown table (metric columns x100 for BLEU/ROUGE/METEOR, CIDEr x100)."""
    a, b = result["pair"]
    lines = ["| row | BLEU-4 | ROUGE-L | CIDEr | METEOR |", "|---|---:|---:|---:|---:|"]
    for tgt, src in ((a, b), (b, a)):
        for template in ROWS:
            name = template.format(a=tgt, b=src)
            r = result["rows"].get(name)
            if r is None:
                continue
            meteor = "-" if r["meteor"] is None else f"{100 * r['meteor']:.1f}"
            lines.append(f"| {name} | {100 * r['bleu4']:.1f} | {100 * r['rouge_l']:.1f} | {100 * r['cider']:.1f} "
                         f"| {meteor} |")
    return "\n".join(lines)


def evaluate_pivot(checkpoint, shards, out, split: str = "test", pairs: Sequence[tuple[str, str]] | None = None,
                   settings: PivotSettings | None = None, train_split: str = "train", meteor: bool = True,
                   progress: bool = False) -> dict[str, Any]:
    """Table 1 of a trained captioner (a run's checkpoints, a step folder or an export) on `split` of the
    preprocessed dataset `shards`, for each pair (default: every pair of the model's languages): writes
    OUT/metrics.json, OUT/report.md (the tables and sample translations) and TensorBoard summaries."""
    import json
    from pathlib import Path

    from tqdm import tqdm

    from dist_train.eval.embed import read_split_captions, read_split_pixels
    from dist_train.eval.generation_metrics import MeteorScorer, java_executable
    from dist_train.eval.run import _step_of, check_vocabulary
    from dist_train.preprocess.vocab import load_vocab
    from dist_train.storage import location
    from dist_train.train.export import load_model
    from dist_train.train.objectives.pivot import model_images

    root, out = location(shards), Path(out)
    model, config = load_model(checkpoint)
    if config["model"] != "pivot":
        raise ValueError(f"{checkpoint} holds a {config['model']} model, not a pivot captioner")
    check_vocabulary(config, root, checkpoint)
    mc = config["model_config"]
    languages = list(mc["languages"])
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(languages) for b in languages[i + 1:]]
    for a, b in pairs:
        for lang in (a, b):
            if lang not in languages:
                raise ValueError(f"--pairs {a}-{b}: the model captions {', '.join(languages)}, not {lang}")
    if settings is None:
        settings = PivotSettings.of_run(config.get("objective", {}))
    sp = load_vocab((root / "spm.model").read_bytes())
    vocab = type("V", (), {"bos_id": mc["bos_id"], "eos_id": mc["eos_id"], "pad_id": mc["pad_id"]})
    max_tokens = config.get("data", {}).get("max_tokens", mc.get("max_caption_len", 30))
    image_size = config.get("data", {}).get("image_size", 64)
    evaluator = PivotEvaluator(model, vocab, sp.decode, max_tokens, settings)

    images = group_by_image(read_split_captions(root, split))
    pixels = model_images(read_split_pixels(root, split, [im.image_id for im in images], image_size))
    pool = None
    if settings.retrieval_candidates:
        train = [im for im in group_by_image(read_split_captions(root, train_split))
                 if all(im.texts.get(lang) for lang in languages)][: settings.retrieval_candidates]
        if train:
            train_pixels = model_images(read_split_pixels(root, train_split, [im.image_id for im in train], image_size))
            with torch.no_grad():
                features = torch.cat([model.encode(train_pixels[idx]) for idx in _batches(len(train), settings.batch_size)])
            pool = RetrievalPool(features, {lang: [im.texts[lang][0] for im in train] for lang in languages})
    scorers: dict[str, Any] = {}
    results = []
    try:
        if meteor and java_executable() is not None:
            scorers = {lang: MeteorScorer(lang) for lang in sorted({x for pair in pairs for x in pair})}
        for a, b in tqdm(pairs, desc="pivot evaluation", unit="pair", disable=not progress):
            results.append(evaluator.evaluate_pair(a, b, images, pixels, image_size, pool=pool, meteor=meteor,
                                                   meteor_scorers=scorers))
    finally:
        for scorer in scorers.values():
            scorer.close()
    metrics = {"pivot": results, "meta": {"checkpoint": str(checkpoint), "shards": str(root), "split": split,
                                           "images": len(images), "retrieval_pool": 0 if pool is None else len(pool.features),
                                           "settings": vars(settings).copy()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=float))
    report = [f"# Visual pivoting: {checkpoint} on {split}", "",
              f"{len(images)} images; feedback propagation {settings.steps} x lr {settings.lr} ({settings.optimizer}), "
              f"beam {settings.beam_size}. Scores x100; every row against all references of the target language."]
    for result in results:
        a, b = result["pair"]
        report += ["", f"## {a} and {b} ({result['images']} images)", "", table_markdown(result), ""]
        modules = {r["meteor_modules"] for r in result["rows"].values()}
        report.append("METEOR: " + "; ".join(sorted(modules)))
        for direction, rows in result["samples"].items():
            report += ["", f"### Samples {direction}", ""]
            for sample in rows[:3]:
                report.append(f"- given: {sample['given']}")
                for key, value in sample.items():
                    if key not in ("image_id", "given", "references"):
                        report.append(f"  - {key}: {value}")
                report.append(f"  - references: {' | '.join(sample['references'])}")
    (out / "report.md").write_text("\n".join(report) + "\n")
    from dist_train.train.tensorboard import TensorBoardLogger

    tb = TensorBoardLogger(out / "tb", enabled=True)
    step = _step_of(checkpoint)
    for result in results:
        tb.scalars({f"pivot/{name}/{metric}": r[metric] for name, r in result["rows"].items()
                    for metric in ("bleu4", "rouge_l", "cider", "meteor") if r.get(metric) is not None}, step)
        tb.text(f"pivot/{'-'.join(result['pair'])}", table_markdown(result), step)
    tb.close()
    return metrics


def caption(checkpoint, lang: str, image=None, given: str | None = None, given_lang: str | None = None,
            settings: PivotSettings | None = None, vocab_file=None) -> dict[str, Any]:
    """One caption in `lang` from a trained captioner: of `image` (a file), of `image` corrected by a
    caption `given` in `given_lang` (feedback propagation from the image's pivot), or, without an
    image, a translation of `given` (from a noise image's pivot). Returns the caption and what was used."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from dist_train.preprocess.captions import normalize_caption
    from dist_train.preprocess.vocab import load_vocab
    from dist_train.train.export import load_model
    from dist_train.train.loader import _resize_center_crop
    from dist_train.train.objectives.pivot import model_images

    if image is None and given is None:
        raise ValueError("give --image, --given (with --given-lang), or both")
    if (given is None) != (given_lang is None):
        raise ValueError("--given and --given-lang go together")
    model, config = load_model(checkpoint)
    if config["model"] != "pivot":
        raise ValueError(f"{checkpoint} holds a {config['model']} model, not a pivot captioner")
    for code in (lang, given_lang):
        if code is not None and code not in model.config.languages:
            raise ValueError(f"the model captions {', '.join(model.config.languages)}, not {code}")
    vocab_file = Path(vocab_file) if vocab_file else _vocab_beside(checkpoint, config)
    sp = load_vocab(vocab_file.read_bytes())
    s = settings or PivotSettings.of_run(config.get("objective", {}))
    mc = config["model_config"]
    max_tokens = config.get("data", {}).get("max_tokens", mc.get("max_caption_len", 30))
    size = config.get("data", {}).get("image_size", 64)
    vocab = type("V", (), {"bos_id": mc["bos_id"], "eos_id": mc["eos_id"], "pad_id": mc["pad_id"]})
    evaluator = PivotEvaluator(model, vocab, sp.decode, max_tokens, s)
    if image is not None:
        try:
            picture = _resize_center_crop(Image.open(image).convert("RGB"), size)
        except (OSError, ValueError) as e:
            raise ValueError(f"--image {image}: cannot be read as an image ({e})") from None
        pixels = model_images(torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy()).permute(2, 0, 1)[None])
        z0 = evaluator._pivots(pixels)
    else:
        z0 = evaluator._noise(1, size)
    mode = "image" if given is None else ("image+caption" if image is not None else "caption")
    if given is None:
        text = evaluator._decode_pivots(z0, lang)[0]
    else:
        ids = np.asarray(sp.encode(normalize_caption(given)), dtype=np.int64)
        text = evaluator._fit_and_decode(z0, [ids], given_lang, lang)[0]
    return {"caption": text, "language": lang, "mode": mode, "given": given, "given_language": given_lang,
            "steps": s.steps if given is not None else 0, "lr": s.lr}


def _vocab_beside(checkpoint, config: dict[str, Any]):
    """The vocabulary of a run or export: spm.model in the export or run folder, else the dataset's."""
    from pathlib import Path

    from dist_train.storage import location

    path = Path(checkpoint)
    for candidate in (path / "spm.model", path.parent / "spm.model", path.parent.parent / "spm.model"):
        if candidate.is_file():
            return candidate
    shards = config.get("data", {}).get("shards")
    if shards and (location(shards) / "spm.model").is_file():
        return location(shards) / "spm.model"
    raise FileNotFoundError(f"no spm.model beside {checkpoint}; give the vocabulary with --vocab")


def summary_line(metrics: dict[str, Any]) -> str:
    """The headline of each pair: BLEU-4 of image -> a, image + b -> a, b -> a and the noise baseline."""
    parts = []
    for result in metrics["pivot"]:
        a, b = result["pair"]
        for tgt, src in ((a, b), (b, a)):
            rows = result["rows"]
            cells = [f"{name} {100 * rows[name]['bleu4']:.1f}" for name in
                     (f"image->{tgt}", f"image+{src}->{tgt}", f"{src}->{tgt}", f"noise->{tgt}") if name in rows]
            parts.append(", ".join(cells))
    return "BLEU-4: " + "; ".join(parts)


__all__ = ["ImageCaptions", "PivotEvaluator", "caption", "PivotSettings", "ROWS", "RetrievalPool", "evaluate_pivot",
           "group_by_image", "summary_line", "table_markdown"]
