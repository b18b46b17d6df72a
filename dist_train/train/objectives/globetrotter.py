"""The Globetrotter objective: its four losses over the global batch, and sentence-translation evaluation.

Augmentation (two SimCLR views per image) and cloze masking happen here, batched on the training
device; the losses come from `dist_train.losses`, the evaluation from `dist_train.eval`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from dist_train.config import ConfigError, check_known_keys
from dist_train.losses import cloze_loss, cross_modal_loss, simclr_loss, transitive_loss
from dist_train.models.registry import build_model
from dist_train.models.text_batch import IGNORE_INDEX, mask_for_cloze
from dist_train.train.config import TrainConfig
from dist_train.train.data import Vocab

log = logging.getLogger(__name__)


@dataclass
class GlobetrotterObjectiveConfig:
    """Loss weights (0 switches a loss off: the paper's ablations), temperatures and forms."""

    cross_modal: float = 1.0  # L_x
    visual: float = 1.0  # L_v
    transitive: float = 1.0  # L_t
    cloze: float = 1.0  # L_c
    temperature: float = 0.1
    margin: float = 0.4  # m of the transitive loss
    loss_form: str = "paper"  # paper | code: the form of L_x and L_v
    alpha_form: str = "paper"  # paper (cube root) | code
    transitive_normalise: Optional[str] = None  # anchors | alpha (sum of alpha); None: the alpha form's own
    supervised: bool = False  # baseline: alpha = 1 for captions that translate each other
    text_only: bool = False  # baseline: no images, no image losses (only L_c remains)
    p_predict: float = 1 / 6
    p_corrupt: float = 0.2
    # Which losses see the cloze-masked captions: "all" (one text forward serves every loss, as the
    # published code does) or "cloze" (the contrastive losses see the captions as written, at the cost
    # of a second text forward). With the cloze loss off, no loss sees masked captions.
    masked_text: str = "all"
    # SimCLR augmentation of both views (keys of dist_train.models.augment.AugmentConfig; empty: SimCLR's
    # defaults). Data whose captions name colours, sides or counts needs augmentations that keep the
    # caption true (no flips, no hue shift, no grayscale, mild crops), or L_x has nothing consistent to learn.
    augment: dict[str, Any] = field(default_factory=dict)


def _augment_settings(raw: Any) -> dict[str, Any]:
    """`objective.augment` as AugmentConfig keywords (config lists become tuples)."""
    return {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in dict(raw).items()}


def _objective_config(raw: dict[str, Any]) -> GlobetrotterObjectiveConfig:
    check_known_keys(raw, GlobetrotterObjectiveConfig, "objective", "a setting of the globetrotter objective")
    cfg = GlobetrotterObjectiveConfig(**raw)
    from dist_train.models.augment import AugmentConfig

    check_known_keys(cfg.augment, AugmentConfig, "objective.augment", "an augmentation setting", exclude=["size"])
    try:
        AugmentConfig(**_augment_settings(cfg.augment))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key 'objective.augment': {exc}") from None
    for key in ("loss_form", "alpha_form"):
        if getattr(cfg, key) not in ("paper", "code"):
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: use paper or code")
    if cfg.masked_text not in ("all", "cloze"):
        raise ConfigError(f"config key 'objective.masked_text' = {cfg.masked_text!r}: use all or cloze")
    if cfg.transitive_normalise not in (None, "anchors", "alpha"):
        raise ConfigError(f"config key 'objective.transitive_normalise' = {cfg.transitive_normalise!r}: "
                          "use anchors or alpha")
    return cfg


class GlobetrotterObjective:
    def __init__(self, cfg: TrainConfig, vocab: Vocab):
        self.run = cfg
        self.vocab = vocab
        self.cfg = _objective_config(dict(cfg.objective))
        if self.cfg.text_only:
            self.cfg.cross_modal = self.cfg.visual = 0.0
            if not self.cfg.supervised:
                self.cfg.transitive = 0.0
        self.last_alpha: torch.Tensor | None = None

    def build_model(self) -> torch.nn.Module:
        model_cfg = {"vocab_size": self.vocab.size, "pad_id": self.vocab.pad_id, "bos_id": self.vocab.bos_id,
                     "eos_id": self.vocab.eos_id, "mask_id": self.vocab.mask_id,
                     "max_length": self.run.data.max_tokens, "text_only": self.cfg.text_only,
                     **dict(self.run.model_config)}
        try:
            return build_model(self.run.model, model_cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_config: {exc}") from None

    @property
    def uses_images(self) -> bool:
        c = self.cfg
        return not c.text_only and (c.cross_modal > 0 or c.visual > 0 or (c.transitive > 0 and not c.supervised))

    def loss(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        from dist_train.models.augment import AugmentConfig, augment_batch

        c = self.cfg
        tokens = batch["tokens"]
        cloze = mask_for_cloze(tokens, self.vocab.mask_id, self.vocab.size,
                               (self.vocab.pad_id, self.vocab.bos_id, self.vocab.eos_id, self.vocab.mask_id),
                               generator, p_predict=c.p_predict, p_corrupt=c.p_corrupt)
        inputs = cloze.inputs.to(device)
        labels = cloze.labels.to(device)
        images = None
        if self.uses_images:
            pixels = batch["images"].to(device)
            augment = AugmentConfig(size=self.run.data.image_size, **_augment_settings(c.augment))
            images = torch.cat([augment_batch(pixels, generator, augment), augment_batch(pixels, generator, augment)])
        if images is not None:
            images = images.to(_float_dtype(engine))  # bf16 / fp16 engines hold their weights in that type
        if c.masked_text == "all" and c.cloze > 0:
            out = engine(tokens=inputs, images=images, cloze_positions=labels != IGNORE_INDEX)
        else:
            out = engine(tokens=tokens.to(device), images=images)
            if c.cloze > 0:
                out["cloze_logits"] = engine(tokens=inputs, cloze_positions=labels != IGNORE_INDEX)["cloze_logits"]
        out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}  # losses in fp32
        n = tokens.shape[0]
        terms: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        if images is not None:
            image_cross = torch.stack([out["image_cross"][:n], out["image_cross"][n:]], dim=1)
            image_visual = out["image_visual"]
            if c.cross_modal > 0:
                terms["cross_modal"] = cross_modal_loss(out["text_cross"], image_cross, temperature=c.temperature,
                                                        form=c.loss_form)
            if c.visual > 0:
                terms["visual"] = simclr_loss(image_visual[:n], image_visual[n:], temperature=c.temperature,
                                              form=c.loss_form)
        if c.transitive > 0:
            if c.supervised:
                result = transitive_loss(out["text_text"], group_ids=batch["groups"].to(device),
                                         temperature=c.temperature, margin=c.margin, form=c.alpha_form,
                                         normalise_by=c.transitive_normalise)
            else:
                x = (out["image_cross"][:n] * out["text_cross"]).sum(-1).detach()
                result = transitive_loss(out["text_text"], out["image_visual"][:n], image_text_sim=x,
                                         temperature=c.temperature, margin=c.margin, form=c.alpha_form,
                                         normalise_by=c.transitive_normalise)
            terms["transitive"] = result.loss
            metrics["stat/alpha_positive_fraction"] = float(result.positive_fraction)
            metrics["stat/alpha_mean_positive"] = float(result.mean_positive_alpha)
            self.last_alpha = result.alpha.detach().flatten().cpu()
        if c.cloze > 0:
            terms["cloze"] = cloze_loss(out["cloze_logits"], labels[labels != IGNORE_INDEX])
        weights = {"cross_modal": c.cross_modal, "visual": c.visual, "transitive": c.transitive, "cloze": c.cloze}
        total = sum(weights[k] * v for k, v in terms.items())
        metrics.update({k: float(v.detach()) for k, v in terms.items()})
        metrics["total"] = float(total.detach())
        return total, metrics

    # --- evaluation --------------------------------------------------------------------------------------------

    def evaluate(self, engine, cfg: TrainConfig, tb, step: int, device: torch.device) -> dict[str, Any]:
        """Sentence translation by retrieval on the evaluation split, logged to TensorBoard by rank 0."""
        from dist_train.eval.embed import embed_batches, embed_tokens, read_split_captions, read_split_images
        from dist_train.eval.report import save_pair_heatmap
        from dist_train.eval.retrieval import cross_modal_recall, sentence_translation

        captions = read_split_captions(cfg.data.shards, cfg.eval.split)
        was_training = engine.training
        engine.eval()
        cross = None
        try:
            text_text = embed_tokens(lambda tokens: engine(tokens=tokens.to(device))["text_text"], captions.tokens,
                                     self.vocab, cfg.data.max_tokens, cfg.eval.batch_size)
            if not self.cfg.text_only:  # image-text retrieval per language
                image_ids = sorted(set(captions.image_ids))
                images = read_split_images(cfg.data.shards, cfg.eval.split, image_ids, cfg.data.image_size)
                model = engine.module
                dtype = _float_dtype(engine)
                image_emb = embed_batches(lambda x: model.encode_image(x.to(device, dtype))["image_cross"], len(images),
                                          lambda idx: images[idx], cfg.eval.batch_size)
                text_emb = embed_tokens(lambda t: model.encode_text(t.to(device))["text_cross"], captions.tokens,
                                        self.vocab, cfg.data.max_tokens, cfg.eval.batch_size)
                if image_emb is not None:
                    index = {image_id: i for i, image_id in enumerate(image_ids)}
                    cross = cross_modal_recall(image_emb, text_emb, [index[i] for i in captions.image_ids],
                                               captions.languages)
        finally:
            engine.train(was_training)
        if text_text is None:  # not rank 0
            return {}
        result = sentence_translation(text_text, captions.groups, captions.languages)
        metrics = result.to_metrics()
        overall = metrics["retrieved_positives"]
        values = {"eval/sentence_translation": overall["value"], "eval/sentence_translation_chance": overall["chance"]}
        if cross is not None:
            values["eval/cross_modal_mean_recall"] = cross.average_mean_recall
            values["eval/cross_modal_mean_recall_chance"] = cross.average_mean_recall_chance
            for lang, recall in cross.per_language.items():
                values[f"eval/cross_modal_mean_recall/{lang}"] = recall.mean_recall
        pairs = metrics["by_language_pair"]
        for i, a in enumerate(pairs["languages"]):
            row = [v for v in pairs["value"][i] if v is not None]
            if row:
                values[f"eval/sentence_translation_from/{a}"] = sum(row) / len(row)
        tb.scalars(values, step)
        heatmap = Path(cfg.out_dir) / "eval" / f"sentence_translation_step{step:08d}.png"
        save_pair_heatmap(pairs["value"], pairs["languages"], heatmap,
                          title=f"sentence translation, step {step}", chance=overall["chance"])
        tb.image("eval/sentence_translation_pairs", heatmap, step)
        if self.last_alpha is not None and self.last_alpha.numel():
            tb.histogram("eval/alpha", self.last_alpha.numpy(), step)
        n = min(cfg.log.projector_sentences, len(captions.languages))
        if n:
            tb.embedding("test_sentences", text_text[:n], captions.languages[:n], step)
        tb.flush()
        log.info("step %d: sentence translation %.2f (chance %.2f)", step, overall["value"], overall["chance"])
        return {"sentence_translation": overall}


def _float_dtype(engine) -> torch.dtype:
    return next(p.dtype for p in engine.parameters() if p.is_floating_point())


__all__ = ["GlobetrotterObjective", "GlobetrotterObjectiveConfig"]
