"""The Globetrotter objective: its four losses over the global batch, and sentence-translation evaluation.

Augmentation (two SimCLR views per image) and cloze masking happen here, batched on the training
device; the losses come from `dist_train.losses`, the evaluation from `dist_train.eval`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from dist_train.config import ConfigError, check_known_keys
from dist_train.losses import cloze_loss, cross_modal_loss, simclr_loss, transitive_loss
from dist_train.models.registry import build_model
from dist_train.models.text_batch import IGNORE_INDEX, mask_for_cloze
from dist_train.train.config import TrainConfig, run_dir
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
    # Which image embedding gives alpha's image-image similarity: "visual" (the L_v head, as the paper
    # describes) or "cross" (the L_x head, as the published code's forward computes it: it calls one image
    # head for both). The L_v head learns augmentation invariance, not what captions say; the L_x head
    # is trained against the captions, so its similarities track shared meaning.
    alpha_image: str = "visual"
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
    # Gradient caching (dist_train/losses/grad_cache.py): > 0 embeds each rank's batch in sub-batches of
    # this many captions, so the contrastive batch can outgrow what fits in activation memory; gradients
    # equal the whole batch's (BatchNorm excepted: it normalises each sub-batch on its own, as it
    # normalises each rank's batch). Must divide data.batch_size. 0: off.
    grad_cache_chunk: int = 0


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
    if cfg.alpha_image not in ("visual", "cross"):
        raise ConfigError(f"config key 'objective.alpha_image' = {cfg.alpha_image!r}: use visual or cross")
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
        chunk = self.cfg.grad_cache_chunk
        if chunk < 0 or (chunk and cfg.data.batch_size % chunk):
            raise ConfigError(f"config key 'objective.grad_cache_chunk' = {chunk}: use 0 (off) or a divisor of "
                              f"data.batch_size ({cfg.data.batch_size})")
        if self.cfg.text_only:
            self.cfg.cross_modal = self.cfg.visual = 0.0
            if not self.cfg.supervised:
                self.cfg.transitive = 0.0
        self.last_alpha: torch.Tensor | None = None

    @classmethod
    def check_data(cls, cfg: TrainConfig) -> None:
        """Training ends by evaluating sentence translation on `eval.split`: a split without captions
        that translate each other is refused before the first step (ConfigError, one line)."""
        from dist_train.train.data import check_translation_groups

        check_translation_groups(cfg.data.shards, cfg.eval.split,
                                 what=f"sentence translation (the {cfg.model} objective's evaluation, eval.split)")

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

    @property
    def micro_batches(self) -> int:
        """Sub-batches per optimizer step: data.batch_size / grad_cache_chunk with gradient caching, else 1."""
        return self.run.data.batch_size // self.cfg.grad_cache_chunk if self.cfg.grad_cache_chunk else 1

    def _inputs(self, batch: dict, generator: torch.Generator, device: torch.device, engine) -> dict[str, Any]:
        """The step's inputs on the device, one row per caption: tokens, masked tokens, cloze labels, two views."""
        from dist_train.models.augment import AugmentConfig, augment_batch

        c = self.cfg
        tokens = batch["tokens"]
        cloze = mask_for_cloze(tokens, self.vocab.mask_id, self.vocab.size,
                               (self.vocab.pad_id, self.vocab.bos_id, self.vocab.eos_id, self.vocab.mask_id),
                               generator, p_predict=c.p_predict, p_corrupt=c.p_corrupt)
        inputs = {"tokens": tokens.to(device), "masked": cloze.inputs.to(device), "labels": cloze.labels.to(device)}
        if self.uses_images:
            pixels = batch["images"].to(device)
            augment = AugmentConfig(size=self.run.data.image_size, **_augment_settings(c.augment))
            views = torch.stack([augment_batch(pixels, generator, augment), augment_batch(pixels, generator, augment)],
                                dim=1)
            inputs["views"] = views.to(_float_dtype(engine))  # bf16 / fp16 engines hold their weights in that type
        return inputs

    def _forward(self, engine, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embeddings of a batch (or of a sub-batch of it), in fp32, one row per caption; image outputs are
        (rows, 2 views, dim); cloze logits have one row per masked position, in the batch's order."""
        c = self.cfg
        n = inputs["tokens"].shape[0]
        images = None
        if "views" in inputs:
            images = torch.cat([inputs["views"][:, 0], inputs["views"][:, 1]])  # one forward for both views
        cloze_positions = inputs["labels"] != IGNORE_INDEX
        if c.masked_text == "all" and c.cloze > 0:
            out = engine(tokens=inputs["masked"], images=images, cloze_positions=cloze_positions)
        else:
            out = engine(tokens=inputs["tokens"], images=images)
            if c.cloze > 0:
                out["cloze_logits"] = engine(tokens=inputs["masked"], cloze_positions=cloze_positions)["cloze_logits"]
        keep = {"text_cross", "text_text"} | ({"cloze_logits"} if c.cloze > 0 else set())
        out = {k: v.float() for k, v in out.items() if k in keep or (images is not None and k.startswith("image_"))}
        for key in ("image_cross", "image_visual"):
            if key in out:
                out[key] = torch.stack([out[key][:n], out[key][n:]], dim=1)
        return out

    def _losses(self, out: dict[str, torch.Tensor], labels: torch.Tensor, groups: torch.Tensor):
        """The weighted sum of the losses over the (global) batch, and its terms and statistics for the log."""
        c = self.cfg
        terms: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        if "image_cross" in out:
            if c.cross_modal > 0:
                terms["cross_modal"] = cross_modal_loss(out["text_cross"], out["image_cross"],
                                                        temperature=c.temperature, form=c.loss_form)
            if c.visual > 0:
                terms["visual"] = simclr_loss(out["image_visual"][:, 0], out["image_visual"][:, 1],
                                              temperature=c.temperature, form=c.loss_form)
        if c.transitive > 0:
            if c.supervised:
                result = transitive_loss(out["text_text"], group_ids=groups, temperature=c.temperature,
                                         margin=c.margin, form=c.alpha_form, normalise_by=c.transitive_normalise)
            else:
                x = (out["image_cross"][:, 0] * out["text_cross"]).sum(-1).detach()
                image_key = "image_cross" if c.alpha_image == "cross" else "image_visual"
                result = transitive_loss(out["text_text"], out[image_key][:, 0], image_text_sim=x,
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

    def loss(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        inputs = self._inputs(batch, generator, device, engine)
        return self._losses(self._forward(engine, inputs), inputs["labels"], batch["groups"].to(device))

    def backward_step(self, engine, batch: dict, generator: torch.Generator, device: torch.device,
                      step: int) -> dict[str, float]:
        """Forward and backward of one step, gradient-cached when `grad_cache_chunk` is set (the engine steps).

        With caching, each rank embeds its batch in sub-batches of `grad_cache_chunk` captions without a
        graph, computes the losses over the whole global batch on the cached embeddings, then replays each
        sub-batch with a graph and backpropagates the embeddings' gradients through it. DeepSpeed sees the
        sub-batches as gradient-accumulation micro-batches (its `gradient_accumulation_steps` is their
        count), every one but the last inside the accumulation, unscaled: their gradients add up to the
        whole batch's.
        """
        if not self.cfg.grad_cache_chunk:
            loss, metrics = self.loss(engine, batch, generator, device, step)
            engine.backward(loss)
            return metrics
        from dist_train.losses import grad_cache_step, split_batch

        inputs = self._inputs(batch, generator, device, engine)
        chunks = split_batch(inputs, self.cfg.grad_cache_chunk)
        keys: list[str] = []

        def embed(chunk: dict[str, Any]) -> tuple[torch.Tensor, ...]:
            out = self._forward(engine, chunk)
            keys[:] = sorted(out)
            return tuple(out[k] for k in keys)

        def losses(*embeddings: torch.Tensor):
            return self._losses(dict(zip(keys, embeddings)), inputs["labels"], batch["groups"].to(device))

        def backward(surrogate: torch.Tensor, last: bool) -> None:
            engine.set_gradient_accumulation_boundary(last)
            engine.backward(surrogate, scale_wrt_gas=False)

        _, metrics = grad_cache_step(embed, chunks, losses, backward=backward, restore_buffers_of=engine.module)
        return metrics

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
        metrics = sentence_translation(text_text, captions.groups, captions.languages,
                                       exclude_same_language=True).to_metrics()
        pooled = sentence_translation(text_text, captions.groups, captions.languages).to_metrics()["retrieved_positives"]
        overall = metrics["retrieved_positives"]
        values = {"eval/sentence_translation": overall["value"], "eval/sentence_translation_chance": overall["chance"],
                  "eval/sentence_translation_pooled": pooled["value"],
                  "eval/sentence_translation_pooled_chance": pooled["chance"]}
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
        missing = sorted(tag for tag, v in values.items() if v is None or v != v)  # None or NaN: not computed
        if missing:
            log.warning("step %d: not logged, could not be computed on %s: %s", step, cfg.eval.split, ", ".join(missing))
        tb.scalars({tag: v for tag, v in values.items() if tag not in missing}, step)
        heatmap = run_dir(cfg) / "eval" / f"sentence_translation_step{step:08d}.png"
        save_pair_heatmap(pairs["value"], pairs["languages"], heatmap,
                          title=f"sentence translation, step {step}", chance=overall["chance"])
        tb.image("eval/sentence_translation_pairs", heatmap, step)
        if self.last_alpha is not None and self.last_alpha.numel():
            tb.histogram("eval/alpha", self.last_alpha.numpy(), step)
        n = min(cfg.log.projector_sentences, len(captions.languages))
        if n:
            tb.embedding("test_sentences", text_text[:n], captions.languages[:n], step)
        tb.flush()
        log.info("step %d: sentence translation %s (chance %s; pooled with the own language %s, chance %s)",
                 step, *(_percent(v) for v in (overall["value"], overall["chance"], pooled["value"], pooled["chance"])))
        return {"sentence_translation": overall}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _float_dtype(engine) -> torch.dtype:
    return next(p.dtype for p in engine.parameters() if p.is_floating_point())


__all__ = ["GlobetrotterObjective", "GlobetrotterObjectiveConfig"]
