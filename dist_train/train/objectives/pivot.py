"""The visual-pivoting objective: captioning in every language through one image encoder.

Each training sample is an image with one caption in one language (Multi30K task 2: independent
captions, not translations); the step encodes the batch's images once and takes each caption's
teacher-forced loss under its own language's decoder (`PivotCaptioner.forward` with a per-sample
language tensor), averaged over every target token of the batch. The image encoder and the decoders
learn at their own rates (the paper: 1e-4 and 4e-4), as DeepSpeed parameter groups that the cosine
schedule scales together. Images are only resized and centre-cropped by the loader (no flips: the
benchmark's captions say left and right) and normalised as ImageNet weights expect.

Before training, the training images' per-channel mean and std (after that normalisation) are
measured on up to `pixel_statistics_images` images and stored in the model's buffers: caption-only
pivoting draws its noise images with them, in checkpoints and exports alike.

Evaluation (every `eval.every_steps` and at the end, on `eval.split`): each language's teacher-forced
loss, image -> caption BLEU-4 and CIDEr per language on up to `eval_images` images (beam search), and
a few generated captions beside their references in TensorBoard's TEXT tab. The whole Table 1
(feedback propagation, the baselines) is `dist-train eval` on the run (`dist_train/eval/pivot.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from dist_train.config import ConfigError, check_known_keys
from dist_train.models.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from dist_train.models.registry import build_model
from dist_train.train.config import TrainConfig, run_dir
from dist_train.train.data import Vocab

log = logging.getLogger(__name__)


@dataclass
class PivotObjectiveConfig:
    encoder_lr: float = 1e-4  # the image encoder's learning rate (the paper's)
    decoder_lr: float = 4e-4  # the decoders' (embeddings, attention, LSTMs, output layers)
    pixel_statistics_images: int = 512  # training images measured for the noise images' mean and std
    # inference: feedback propagation (chosen on validation; the paper: lr 0.001 x 20 or 0.01 x 40)
    pivot_steps: int = 20
    pivot_lr: float = 0.001
    pivot_optimizer: str = "adam"
    beam_size: int = 5
    length_penalty: float = 1.0
    eval_images: int = 100  # images captioned at each evaluation during training (0: all)
    logged_captions: int = 4  # generated captions shown in TensorBoard per language and evaluation


def _objective_config(raw: dict[str, Any]) -> PivotObjectiveConfig:
    check_known_keys(raw, PivotObjectiveConfig, "objective", "a setting of the pivot objective")
    cfg = PivotObjectiveConfig(**raw)
    for key in ("encoder_lr", "decoder_lr", "pivot_lr"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: must be positive")
    for key in ("pixel_statistics_images", "pivot_steps", "eval_images", "logged_captions"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: must be >= 0")
    if cfg.beam_size < 1:
        raise ConfigError(f"config key 'objective.beam_size' = {cfg.beam_size!r}: must be at least 1")
    if cfg.pivot_optimizer not in ("adam", "sgd"):
        raise ConfigError(f"config key 'objective.pivot_optimizer' = {cfg.pivot_optimizer!r}: use adam or sgd")
    return cfg


def model_config_placeholders(model_raw: dict[str, Any], size: int) -> dict[str, Any]:
    """Stand-ins for what `build_model` fills in from the dataset (its languages, the vocabulary size),
    so a config's model_config is checked before any data is read."""
    languages = model_raw.get("languages") or ["en", "de"]
    return {"languages": languages, "vocab_sizes": [size] * len(languages) if isinstance(languages, list) else [size]}


def model_images(images: torch.Tensor) -> torch.Tensor:
    """Loader images (uint8 [B, 3, H, W], already resized and centre-cropped) as the encoder reads them."""
    return normalize(images.float().div(255.0), IMAGENET_MEAN, IMAGENET_STD)


def training_languages(root, split: str) -> list[str]:
    """The languages of a split, sorted (the loader's language indices; one decoder each)."""
    from dist_train.train.loader import language_counts

    return sorted(language_counts(root, split))


def pixel_statistics(root, split: str, image_size: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of up to `limit` distinct training images, as the encoder reads them."""
    import io
    import json as _json

    import numpy as np
    from PIL import Image

    from dist_train.data.shards import iter_shard, list_finished_shards
    from dist_train.train.loader import _resize_center_crop

    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count, seen = 0, set()
    for tar in list_finished_shards(root, split):
        for raw in iter_shard(tar):
            image_id = _json.loads(raw["json"])["image_id"]
            if image_id in seen:
                continue
            seen.add(image_id)
            image = _resize_center_crop(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"), image_size)
            x = model_images(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)[None])
            x = x.double().flatten(2)[0]
            total += x.sum(dim=1)
            squares += (x * x).sum(dim=1)
            count += x.shape[1]
            if len(seen) >= limit:
                break
        if len(seen) >= limit:
            break
    if count == 0:
        raise ConfigError(f"config key 'data.shards': {split} of {root} has no images to measure")
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=1e-12).sqrt()
    return mean.float(), std.float()


class PivotObjective:
    def __init__(self, cfg: TrainConfig, vocab: Vocab):
        self.run = cfg
        self.vocab = vocab
        self.cfg = _objective_config(dict(cfg.objective))
        if cfg.data.image_features:
            raise ConfigError("config key 'data.image_features' = true: the pivot is a feature map inside the image "
                              "encoder, so the captioner reads images; set data.image_features=false")
        if cfg.data.captions_per_image:
            raise ConfigError(f"config key 'data.captions_per_image' = {cfg.data.captions_per_image}: the captioner "
                              "trains on independent captions, one per sample; set it to 0")
        self.languages = training_languages(cfg.data.shards, cfg.data.split)

    def build_model(self) -> torch.nn.Module:
        model_cfg = {"languages": self.languages, "vocab_sizes": [self.vocab.size] * len(self.languages),
                     "pad_id": self.vocab.pad_id, "bos_id": self.vocab.bos_id, "eos_id": self.vocab.eos_id,
                     "max_caption_len": self.run.data.max_tokens, **dict(self.run.model_config)}
        try:
            model = build_model(self.run.model, model_cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_config: {exc}") from None
        if list(model.config.languages) != self.languages:
            raise ConfigError(f"config key 'model_config.languages' = {list(model.config.languages)}: the training "
                              f"split's languages are {self.languages} (one decoder each, in that order)")
        if self.cfg.pixel_statistics_images:
            mean, std = pixel_statistics(self.run.data.shards, self.run.data.split, self.run.data.image_size,
                                         self.cfg.pixel_statistics_images)
            model.set_pixel_statistics(mean, std)
        return model

    def parameter_groups(self, model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """The encoder at `encoder_lr`, everything else at `decoder_lr`; no decay on biases and norms."""
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim < 2 or name.endswith(".bias") or ".bn" in name or "norm" in name
            groups.setdefault((name.startswith("encoder."), no_decay), []).append(p)
        return [{"params": params, "lr": self.cfg.encoder_lr if encoder else self.cfg.decoder_lr,
                 "weight_decay": 0.0 if no_decay else weight_decay}
                for (encoder, no_decay), params in sorted(groups.items())]

    def loss(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        images = model_images(batch["images"]).to(device, _float_dtype(engine))
        tokens = batch["tokens"].to(device)
        languages = batch["languages"].to(device)
        loss, per_language, targets = engine(images, tokens, languages)
        metrics = {"caption": float(loss.detach())}
        for i, lang in enumerate(self.languages):
            if float(targets[i]) > 0:
                metrics[f"caption_{lang}"] = float(per_language[i])
        return loss, metrics

    # --- evaluation --------------------------------------------------------------------------------------------

    def evaluate(self, engine, cfg: TrainConfig, tb, step: int, device: torch.device) -> dict[str, Any]:
        """Teacher-forced loss per language and image -> caption scores on the evaluation split (rank 0)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return {}
        from dist_train.eval.embed import read_split_captions, read_split_pixels
        from dist_train.eval.generation_metrics import bleu4, cider
        from dist_train.eval.pivot import group_by_image
        from dist_train.models.text_batch import pad_tokens
        from dist_train.preprocess.vocab import load_vocab
        from dist_train.storage import location

        model = engine.module
        sp = load_vocab((location(cfg.data.shards) / "spm.model").read_bytes())
        images = group_by_image(read_split_captions(cfg.data.shards, cfg.eval.split))
        if self.cfg.eval_images:
            images = images[: self.cfg.eval_images]
        pixels = model_images(read_split_pixels(cfg.data.shards, cfg.eval.split, [im.image_id for im in images],
                                                cfg.data.image_size))
        was_training = model.training
        model.eval()
        result: dict[str, Any] = {"step": step, "split": cfg.eval.split, "images": len(images), "languages": {}}
        text_blocks = []
        try:
            with torch.no_grad():
                features = torch.cat([model.encode(pixels[i:i + cfg.eval.batch_size].to(device, _float_dtype(engine)))
                                      for i in range(0, len(pixels), cfg.eval.batch_size)])
                for lang in self.languages:
                    rows = [i for i, im in enumerate(images) if im.tokens.get(lang)]
                    if not rows:
                        continue
                    v = self.vocab
                    tokens = pad_tokens([images[i].tokens[lang][0] for i in rows], cfg.data.max_tokens, v.bos_id,
                                        v.eos_id, v.pad_id).to(device)
                    val_loss = float(model.caption_loss(features[rows], tokens, lang))
                    hyps = []
                    for start in range(0, len(rows), cfg.eval.batch_size):
                        chunk = rows[start:start + cfg.eval.batch_size]
                        out = model.generate(features[chunk], lang, beam_size=self.cfg.beam_size,
                                             length_penalty=self.cfg.length_penalty, max_len=cfg.data.max_tokens)
                        hyps += [sp.decode(t) for t in out.tokens]
                    refs = [images[i].texts[lang] for i in rows]
                    scores = {"loss": val_loss, "bleu4": bleu4(hyps, refs, lang), "cider": cider(hyps, refs, lang)}
                    result["languages"][lang] = scores
                    text_blocks.append(f"**{lang}**\n\n" + "\n".join(
                        f"- `{hyps[k]}` (reference: {refs[k][0]})" for k in range(min(self.cfg.logged_captions,
                                                                                        len(hyps)))))
        finally:
            model.train(was_training)
        values = {}
        for lang, scores in result["languages"].items():
            values.update({f"eval/caption_loss/{lang}": scores["loss"], f"eval/bleu4/{lang}": scores["bleu4"],
                           f"eval/cider/{lang}": scores["cider"]})
        tb.scalars(values, step)
        if text_blocks:
            tb.text("eval/captions", "\n\n".join(text_blocks), step)
        tb.flush()
        path = run_dir(cfg) / "eval" / f"captions-step{step:08d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**result, "objective": asdict(self.cfg)}, indent=2, default=float))
        log.info("step %d: image -> caption on %s: %s", step, cfg.eval.split, ", ".join(
            f"{lang} BLEU-4 {100 * s['bleu4']:.1f} CIDEr {100 * s['cider']:.1f} (loss {s['loss']:.3f})"
            for lang, s in result["languages"].items()))
        return result


def _float_dtype(engine) -> torch.dtype:
    return next(p.dtype for p in engine.parameters() if p.is_floating_point())


__all__ = ["PivotObjective", "PivotObjectiveConfig", "model_images", "pixel_statistics", "training_languages"]
