"""The SMALR objective: eq. (4) over the global batch, and image-sentence retrieval with CLC.

L = L_mm + L_mm(masked) + 1e-4 L_mask + 1e-6 L_adv + 5e-2 L_nc (the paper's lambda_2..4; lambda_1 =
1.5 weights the sentence-anchored direction of L_mm, eq. 3). Batches hold whole images
(`data.captions_per_image` >= 2, distinct languages) with their precomputed features
(`data.image_features=true`); the first two captions of each image are the sentence pair of MCLM and
of the neighbourhood constraints. Words come from the HEM vocabulary fitted on the training captions
before the model is built and saved in RUN/hem/ (dist_train.train.hem_vocab), so a resumed run and
its evaluation reuse it. The adversary's gradient-reversal factor follows MULE's ramp over training
progress (step / total steps).

Evaluation: mean recall (R@1, 5, 10 both directions) per language and its average A; when the split
carries translated queries (`meta.translations`), the same figures with CLC-A (average of the
versions' scores) and CLC-C (the 2-layer classifier fitted on the val split's queries), the combined
(text, image) score serving both directions.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dist_train.config import ConfigError, check_known_keys
from dist_train.losses.smalr import adversarial_ramp, language_adversary_loss, mclm_loss, neighbourhood_loss
from dist_train.losses.triplet import MULE_HARD_NEGATIVES, MULE_IMAGE_WEIGHT, MULE_MARGIN, triplet_ranking_loss
from dist_train.models.hem import MASK, full_vocabulary_parameters
from dist_train.models.registry import build_model
from dist_train.models.smalr import SmalrConfig
from dist_train.train.config import TrainConfig, run_dir
from dist_train.train.data import Vocab
from dist_train.train.hem_vocab import (HemSettings, WordSplitter, WordVocabulary, fit_hem_tables, fit_word_vectors,
                                        load_artifact, pad_word_ids, save_artifact)

log = logging.getLogger(__name__)

# HEM settings that decide the vocabulary and word vectors (RUN/hem/vectors/, reusable across modes)
VECTOR_SETTINGS = ["min_count", "vec_paths", "fasttext_dim", "fasttext_epochs", "fasttext_buckets", "word_dim",
                   "unsegmented"]


@dataclass
class SmalrObjectiveConfig:
    """Loss weights (0 switches a term off), the triplet loss's settings, masking, the ramp, HEM."""

    margin: float = MULE_MARGIN
    hard_negatives: int = MULE_HARD_NEGATIVES
    # the first steps sum the hinges over all negatives (hard_negatives=0) before the top-N average takes
    # over: a warm-up, not in the paper (as objectives/vse.py's); from random initialisation on weak image
    # features the top-N average alone stays at its collapsed value, margin x (1 + direction_weight)
    sum_of_hinges_steps: int = 0
    direction_weight: float = MULE_IMAGE_WEIGHT  # lambda_1
    # which direction lambda_1 weights: text_anchored (SMALR eq. 3, L(Q, I+, I-)) or image_anchored
    # (MULE's "image loss factor")
    weighted_direction: str = "text_anchored"
    masked_triplet: float = 1.0  # L_mm on the masked sentences (part of MCLM: 0 in the HEM baseline)
    mclm: float = 1e-4  # lambda_2
    adversarial: float = 1e-6  # lambda_3
    neighbourhood: float = 5e-2  # lambda_4
    domain_adapt: float = 1.0  # the ramp's final gradient-reversal factor
    mask_p: float = 0.2
    hem: dict[str, Any] = field(default_factory=dict)  # HemSettings keys
    clc: bool = True
    clc_train_split: str = "val"


def _objective_config(raw: dict[str, Any]) -> tuple[SmalrObjectiveConfig, HemSettings]:
    check_known_keys(raw, SmalrObjectiveConfig, "objective", "a setting of the smalr objective")
    cfg = SmalrObjectiveConfig(**raw)
    if cfg.weighted_direction not in ("text_anchored", "image_anchored"):
        raise ConfigError(f"config key 'objective.weighted_direction' = {cfg.weighted_direction!r}: "
                          "use text_anchored or image_anchored")
    if cfg.sum_of_hinges_steps < 0:
        raise ConfigError(f"config key 'objective.sum_of_hinges_steps' = {cfg.sum_of_hinges_steps!r}: must be >= 0")
    if not 0.0 < cfg.mask_p < 1.0:
        raise ConfigError(f"config key 'objective.mask_p' = {cfg.mask_p!r}: must be in (0, 1)")
    hem_raw = dict(cfg.hem)
    check_known_keys(hem_raw, HemSettings, "objective.hem", "a HEM setting")
    hem = HemSettings(**{k: (dict(v) if k == "vec_paths" else list(v) if k == "unsegmented" else v)
                         for k, v in hem_raw.items()})
    hem.validate()
    return cfg, hem


def mask_words(words: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """A fraction p of each sentence's words (rounded, at least one) become MASK, chosen uniformly."""
    present = words > MASK
    count = (present.sum(1).float() * p).round().clamp(min=1)
    keys = torch.rand(words.shape, generator=generator).masked_fill(~present, 2.0)
    order = keys.argsort(1).argsort(1)  # each position's rank among its sentence's random keys
    return words.masked_fill((order < count[:, None]) & present, MASK)


class SmalrObjective:
    def __init__(self, cfg: TrainConfig, vocab: Vocab):
        self.run = cfg
        self.vocab = vocab
        self.cfg, self.hem = _objective_config(dict(cfg.objective))
        if not cfg.data.image_features:
            raise ConfigError("config key 'data.image_features' = false: SMALR trains on precomputed image features "
                              "(set data.image_features=true on a dataset preprocessed with features.enabled=true)")
        if cfg.data.captions_per_image < 2:
            raise ConfigError(f"config key 'data.captions_per_image' = {cfg.data.captions_per_image}: SMALR needs "
                              "batches of whole images with at least 2 captions in distinct languages (MCLM, L_nc)")
        self.split = WordSplitter(vocab.path, self.hem.unsegmented)
        self.words: WordVocabulary | None = None
        self.word_ids_by_key: dict[str, list[int]] = {}
        self.total_steps: int | None = None
        self.model_cfg: dict[str, Any] = {}

    # --- the fitted vocabulary and the model -------------------------------------------------------------

    def _hem_dir(self) -> Path:
        return run_dir(self.run) / "hem"

    def _fit_or_load_hem(self) -> dict[str, np.ndarray]:
        """RUN/hem/ when it exists; otherwise rank 0 fits the vocabulary and vectors, then every rank
        runs the data-parallel assignment pretraining, and rank 0 saves the artifact."""
        from dist_train.eval.embed import read_split_captions

        directory = self._hem_dir()
        distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if distributed else 0
        if not (directory / "vocab.json").is_file():
            train = read_split_captions(self.run.data.shards, self.run.data.split)
            stage = directory / "vectors"
            if rank == 0 and not (stage / "vocab.json").is_file():
                log.info("fitting the HEM word vocabulary and word vectors on %d training captions", len(train.texts))
                vocab, vectors = fit_word_vectors(train.texts, train.languages, self.split, self.hem, self.run.seed)
                save_artifact(stage, vocab, {"word_vectors": vectors}, {"settings": self._settings(VECTOR_SETTINGS)})
            if distributed:
                dist.barrier()
            vocab, arrays, stage_summary = load_artifact(stage)
            self._check_settings(stage_summary, VECTOR_SETTINGS, stage)
            word_ids = [vocab.encode(self.split(t, lang), lang) for t, lang in zip(train.texts, train.languages)]
            embed_dim = int(dict(self.run.model_config).get("embed_dim", SmalrConfig.embed_dim))
            tables, summary = fit_hem_tables(vocab, arrays["word_vectors"], word_ids, train.image_ids,
                                             train.languages, self.hem, self.run.seed, embed_dim)
            summary["settings"] = self._settings([f.name for f in fields(HemSettings)])
            if rank == 0:
                save_artifact(directory, vocab, tables, summary)
                log.info("HEM: %s", json.dumps({k: summary[k] for k in ("mode", "specific_words", "shared_words",
                                                                         "latent_tokens_used")}))
            if distributed:
                dist.barrier()
        self.words, arrays, summary = load_artifact(directory)
        self._check_settings(summary, [f.name for f in fields(HemSettings)], directory)
        return arrays

    def _settings(self, names: list[str]) -> dict[str, Any]:
        return json.loads(json.dumps({name: getattr(self.hem, name) for name in names}))

    def _check_settings(self, summary: dict, names: list[str], directory: Path) -> None:
        """A saved artifact is reused only with the settings it was fitted with."""
        saved = summary.get("settings", {})
        differ = [name for name in names if name in saved and saved[name] != self._settings([name])[name]]
        if differ:
            raise ConfigError(f"config key 'objective.hem.{differ[0]}' = {getattr(self.hem, differ[0])!r}, but "
                              f"{directory} was fitted with {saved[differ[0]]!r} (differing: {', '.join(differ)}); "
                              "use a new out_dir, or delete that folder to refit")

    def build_model(self) -> torch.nn.Module:
        arrays = self._fit_or_load_hem()
        words = self.words
        self.model_cfg = {"num_words": words.size, "num_languages": len(words.languages),
                          "num_specific": int(arrays["specific_vectors"].shape[0]),
                          "num_latent": int(arrays["latent_vectors"].shape[0]),
                          "word_dim": int(arrays["word_vectors"].shape[1]), "feature_dim": self._feature_dim(),
                          **dict(self.run.model_config)}
        try:
            model = build_model(self.run.model, self.model_cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_config: {exc}") from None
        model.hem.load_vocabulary(arrays["word_language"], arrays["word_specific"], arrays["word_latent"],
                                  arrays["specific_vectors"], arrays["latent_vectors"])
        counts = model.parameter_counts()
        counts["embedding_full_vocabulary_per_language"] = full_vocabulary_parameters(
            words.size - 3, len(words.languages), model.config.word_dim, model.config.embed_dim)
        if not dist.is_initialized() or dist.get_rank() == 0:
            (self._hem_dir() / "parameters.json").write_text(json.dumps(counts, indent=2))
            log.info("SMALR parameters: %s", json.dumps(counts))
        self.parameter_counts = counts
        return model

    def _feature_dim(self) -> int:
        from dist_train.train.data import feature_dim

        return feature_dim(self.run.data.shards, self.run.data.split)

    # --- one step -------------------------------------------------------------------------------------------

    def encode_texts(self, texts: list[str], languages: list[str]) -> torch.Tensor:
        return pad_word_ids([self.words.encode(self.split(t, lang), lang) for t, lang in zip(texts, languages)],
                            self.hem.max_words)

    def _batch_words(self, batch: dict) -> torch.Tensor:
        if not self.word_ids_by_key:
            from dist_train.eval.embed import read_split_captions

            train = read_split_captions(self.run.data.shards, self.run.data.split)
            for key, text, lang in zip(train.keys, train.texts, train.languages):
                self.word_ids_by_key[key] = self.words.encode(self.split(text, lang), lang)
        rows = []
        for key, tokens, lang_index in zip(batch["keys"], batch["tokens"], batch["languages"].tolist()):
            if key not in self.word_ids_by_key:  # not in the split read at start: decode the stored ids
                lang = self.words.languages[lang_index] if 0 <= lang_index < len(self.words.languages) else ""
                ids = [int(t) for t in tokens if int(t) not in (self.vocab.pad_id, self.vocab.bos_id, self.vocab.eos_id)]
                self.word_ids_by_key[key] = self.words.encode(self.split(self.split.decode(ids), lang), lang)
            rows.append(self.word_ids_by_key[key])
        return pad_word_ids(rows, self.hem.max_words)

    def _progress(self, step: int) -> float:
        if self.total_steps is None:
            if self.run.max_steps:
                self.total_steps = int(self.run.max_steps)
            else:
                from dist_train.train.data import build_stream

                distributed = dist.is_initialized()
                stream = build_stream(self.run, self.vocab, self.run.data.split, dist.get_rank() if distributed else 0,
                                      dist.get_world_size() if distributed else 1, self.run.data.batch_size,
                                      self.run.data.num_workers)
                self.total_steps = max(1, math.ceil(self.run.epochs * stream.steps_per_epoch))
        return step / self.total_steps

    def _triplet(self, text: torch.Tensor, image: torch.Tensor, groups: torch.Tensor, hard_negatives: int):
        c = self.cfg
        if c.weighted_direction == "text_anchored":  # b-anchored direction weighted: texts as b
            return triplet_ranking_loss(image, text, margin=c.margin, hard_negatives=hard_negatives,
                                        image_weight=c.direction_weight, group_ids=groups)
        return triplet_ranking_loss(text, image, margin=c.margin, hard_negatives=hard_negatives,
                                    image_weight=c.direction_weight, group_ids=groups)

    def loss(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        c = self.cfg
        k = self.run.data.captions_per_image
        hard_negatives = 0 if step < c.sum_of_hinges_steps else c.hard_negatives
        words = self._batch_words(batch)
        n = words.shape[0]
        mclm_on = c.mclm > 0 and bool(engine.module.config.mclm_variants)
        masked = mask_words(words, c.mask_p, generator) if (mclm_on or c.masked_triplet > 0) else None
        first = torch.arange(0, n, k)
        pairs = torch.stack([first, first + 1], dim=1)
        scale = adversarial_ramp(self._progress(step), c.domain_adapt)
        features = batch["features"].to(device, _float_dtype(engine))
        out = engine(words=words.to(device), features=features,
                     masked_words=masked.to(device) if masked is not None else None,
                     pairs=pairs.to(device) if mclm_on else None, reverse_scale=scale)
        out = {key: v.float() if v.is_floating_point() else v for key, v in out.items()}
        groups = batch["image_groups"].to(device)
        terms: dict[str, torch.Tensor] = {"multimodal": self._triplet(out["text"], out["image"], groups,
                                                                             hard_negatives)}
        weights = {"multimodal": 1.0}
        if masked is not None and c.masked_triplet > 0:
            terms["multimodal_masked"] = self._triplet(out["masked_text"], out["image"], groups,
                                                          hard_negatives)
            weights["multimodal_masked"] = c.masked_triplet
        if mclm_on:
            terms["mclm"] = sum(mclm_loss(out[f"mclm_{v}_masked"], out[f"mclm_{v}_predicted"], out[f"mclm_{v}_full"])
                                for v in engine.module.config.mclm_variants)
            weights["mclm"] = c.mclm
        if c.neighbourhood > 0:
            a, b = pairs[:, 0].to(device), pairs[:, 1].to(device)
            terms["neighbourhood"] = (neighbourhood_loss(out["universal_mean"][a], out["universal_mean"][b],
                                                         groups[a], margin=c.margin, hard_negatives=hard_negatives)
                                      + neighbourhood_loss(out["text"][a], out["text"][b], groups[a],
                                                           margin=c.margin, hard_negatives=hard_negatives))
            weights["neighbourhood"] = c.neighbourhood
        if c.adversarial > 0:
            terms["adversarial"] = language_adversary_loss(out["language_logits"], self._language_ids(batch, device))
            weights["adversarial"] = c.adversarial
        total = sum(weights[key] * v for key, v in terms.items())
        metrics = {key: float(v.detach()) for key, v in terms.items()}
        metrics["total"] = float(total.detach())
        metrics["stat/reverse_scale"] = scale
        return total, metrics

    def _language_ids(self, batch: dict, device: torch.device) -> torch.Tensor:
        """The loader's language indices (sorted languages of the split) as indices of the HEM vocabulary."""
        if not hasattr(self, "_stream_to_hem"):
            from dist_train.train.loader import language_counts

            stream_languages = sorted(language_counts(self.run.data.shards, self.run.data.split))
            self._stream_to_hem = torch.tensor([self.words.languages.index(lang) if lang in self.words.languages
                                                else 0 for lang in stream_languages])
        return self._stream_to_hem[batch["languages"].clamp(min=0)].to(device)

    # --- evaluation -----------------------------------------------------------------------------------------

    def _embed_split(self, engine, split: str, device: torch.device):
        """(captions, text_emb, image_ids, image_emb, versions-embedding function) of a split; embeddings
        on rank 0 only (None elsewhere), every rank taking part in the forward passes."""
        from dist_train.eval.embed import embed_batches, read_split_captions, read_split_features

        model = engine.module
        captions = read_split_captions(self.run.data.shards, split)
        image_ids = sorted(set(captions.image_ids))
        features = read_split_features(self.run.data.shards, split, image_ids)
        dtype = _float_dtype(engine)
        batch_size = self.run.eval.batch_size
        image_emb = embed_batches(lambda x: model.encode_image(x.to(device, dtype)), len(image_ids),
                                  lambda idx: features[idx], batch_size)
        text_emb = self._embed_texts(model, captions.texts, captions.languages, device)
        return captions, text_emb, image_ids, image_emb

    def _embed_texts(self, model, texts: list[str], languages: list[str], device: torch.device):
        from dist_train.eval.embed import embed_batches

        return embed_batches(lambda w: model.encode_text(w.to(device))["text"], len(texts),
                             lambda idx: self.encode_texts([texts[i] for i in idx], [languages[i] for i in idx]),
                             self.run.eval.batch_size)

    def _versions(self, model, captions, text_emb, slots: list[str], device: torch.device):
        """QueryVersions (dist_train.eval.run) of a split's captions: their own embedding and their
        translations' (`meta.translations`), embedded with the translation's language's words."""
        from dist_train.eval.run import QueryVersions, translations_of

        slot_of = {lang: i for i, lang in enumerate(slots)}
        n = len(captions.texts)
        rows = np.full((n, len(slots)), -1, dtype=np.int64)
        own = np.array([slot_of[str(lang)] for lang in captions.languages], dtype=np.int64)
        rows[np.arange(n), own] = np.arange(n)
        texts, langs = [], []
        for q, md in enumerate(captions.metas):
            for lang, text in sorted(translations_of(md).items()):
                if lang in slot_of and slot_of[lang] != own[q]:
                    rows[q, slot_of[lang]] = n + len(texts)
                    texts.append(text)
                    langs.append(lang)
        extra = self._embed_texts(model, texts, langs, device) if texts else None
        if text_emb is None:
            return None
        emb = np.concatenate([text_emb, extra]) if extra is not None else text_emb
        return QueryVersions(list(slots), emb, rows, own)

    def evaluate(self, engine, cfg: TrainConfig, tb, step: int, device: torch.device) -> dict[str, Any]:
        from dist_train.eval.retrieval import cross_modal_recall
        from dist_train.eval.run import fit_clc_classifier, translations_of

        was_training = engine.training
        engine.eval()
        try:
            with torch.no_grad():
                captions, text_emb, image_ids, image_emb = self._embed_split(engine, cfg.eval.split, device)
                index = {image_id: i for i, image_id in enumerate(image_ids)}
                text_image = np.array([index[i] for i in captions.image_ids])
                clc_on = self.cfg.clc and any(translations_of(md) for md in captions.metas)
                versions = val_versions = val_text_image = val_image_emb = None
                if clc_on:
                    val = None
                    try:
                        from dist_train.eval.embed import read_split_captions

                        val = read_split_captions(cfg.data.shards, self.cfg.clc_train_split)
                        if not any(translations_of(md) for md in val.metas):
                            val = None
                    except FileNotFoundError:
                        val = None
                    slots = sorted({str(x) for x in captions.languages}
                                   | {lang for md in captions.metas for lang in translations_of(md)})
                    versions = self._versions(engine.module, captions, text_emb, slots, device)
                    if val is not None:
                        val, val_text_emb, val_image_ids, val_image_emb = self._embed_split(
                            engine, self.cfg.clc_train_split, device)
                        val_index = {image_id: i for i, image_id in enumerate(val_image_ids)}
                        val_text_image = [val_index[i] for i in val.image_ids]
                        val_versions = self._versions(engine.module, val, val_text_emb, slots, device)
        finally:
            engine.train(was_training)
        if text_emb is None:  # not rank 0
            return {}
        cross = cross_modal_recall(image_emb, text_emb, text_image, captions.languages)
        result: dict[str, Any] = {
            "step": step,
            "mean_recall": {lang: r.mean_recall for lang, r in cross.per_language.items()},
            "average_mean_recall": cross.average_mean_recall,
            "average_mean_recall_chance": cross.average_mean_recall_chance,
            "parameters": getattr(self, "parameter_counts", {}),
        }
        values = {"eval/mean_recall_A": cross.average_mean_recall,
                  "eval/mean_recall_A_chance": cross.average_mean_recall_chance}
        values.update({f"eval/mean_recall/{lang}": v for lang, v in result["mean_recall"].items()})
        if versions is not None:
            classifier = None
            if val_versions is not None:
                with torch.enable_grad():
                    classifier, trained_on = fit_clc_classifier(val_image_emb, val_versions, val_text_image)
                result["clc_c_trained_on"] = trained_on
                result["clc_c_selected_iteration"] = classifier.selected_iteration  # 0: CLC-A's weighting
                if classifier_is_constant(classifier, len(versions.slots)):
                    # every (query, image) gets one score: each positive ties with every candidate and ranks last
                    result["clc_c_collapsed"] = True
                    log.warning("CLC-C collapsed: the classifier fitted on %s gives every score the same value "
                                "(its hidden units are all inactive); its recall is 0 by the tie rule",
                                self.cfg.clc_train_split)
            for method, by_language in clc_mean_recall(image_emb, versions, text_image, captions.languages,
                                                       classifier).items():
                result[f"mean_recall_{method}"] = by_language
                result[f"average_mean_recall_{method}"] = float(np.mean(list(by_language.values())))
                values[f"eval/mean_recall_A_{method}"] = result[f"average_mean_recall_{method}"]
        tb.scalars(values, step)
        tb.flush()
        out = run_dir(cfg) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"smalr_step{step:08d}.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        log.info("step %d: mean recall A %.2f (chance %.2f)%s", step, cross.average_mean_recall,
                 cross.average_mean_recall_chance,
                 "".join(f", {m} {result[f'average_mean_recall_{m}']:.2f}" for m in ("plain", "clc_a", "clc_c")
                         if f"average_mean_recall_{m}" in result))
        return result


def classifier_is_constant(classifier, num_languages: int) -> bool:
    """True when CLC-C maps every input in [-1, 1]^L to one value (e.g. all ReLU units dead)."""
    probe = torch.rand(num_languages, 64, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = classifier(probe)
    return bool((out.max() - out.min()) <= 1e-12)


def clc_mean_recall(image_emb, versions, text_image, languages, classifier=None) -> dict[str, dict[str, float]]:
    """SMALR's mean recall per language with each query's score combined over its versions: "plain"
    (its own version), CLC-A, and CLC-C when a classifier is given. The combined (text, image) score
    serves both directions, so image -> text uses it too. Every text of the language is a query; one
    without translations keeps its own score."""
    from dist_train.eval.clc import clc_average, clc_classifier_scores
    from dist_train.eval.retrieval import normalised, recall_from_scores
    from dist_train.eval.run import version_scores

    images_all = normalised(image_emb)
    emb = normalised(versions.embeddings)
    text_image = np.asarray(text_image)
    languages = np.asarray([str(x) for x in languages])
    out: dict[str, dict[str, float]] = {"plain": {}, "clc_a": {}}
    if classifier is not None:
        out["clc_c"] = {}
    for lang in sorted(set(languages.tolist())):
        queries = np.flatnonzero(languages == lang)
        image_rows, target = np.unique(text_image[queries], return_inverse=True)
        scores = version_scores(versions, emb, torch.from_numpy(queries), images_all[torch.from_numpy(image_rows)])
        own = torch.from_numpy(versions.own[queries])
        combined = {"plain": scores.gather(0, own[None, :, None].expand(1, *scores.shape[1:]))[0],
                    "clc_a": clc_average(scores)}
        if classifier is not None:
            combined["clc_c"] = clc_classifier_scores(classifier, scores)
        positive = torch.zeros(scores.shape[1:], dtype=torch.bool)
        positive[torch.arange(len(queries)), torch.from_numpy(target.reshape(-1))] = True
        for method, s in combined.items():
            t2i = recall_from_scores(s, positive)
            i2t = recall_from_scores(s.T, positive.T)
            out[method][lang] = float(np.mean([*t2i.values(), *i2t.values()]))
    return out


def _float_dtype(engine) -> torch.dtype:
    return next(p.dtype for p in engine.parameters() if p.is_floating_point())


__all__ = ["SmalrObjective", "SmalrObjectiveConfig", "clc_mean_recall", "mask_words"]
