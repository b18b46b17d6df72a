"""The multilingual VSE++ objective: caption-image ranking, and caption-caption ranking drawn with p = 0.5.

Kádár et al. train one VSE++ model on captions of every language; each step is either caption-image
ranking (c2i) or, with probability ``p_c2c``, caption-caption ranking (c2c) between two captions of
the same image in different languages, both with VSE++'s max-of-hinges loss (margin 0.2).

* The task of a step is drawn from (seed, step), never from per-rank state, so every rank runs the
  same task at a step (their losses share one gathered batch) and a resumed run draws what the
  uninterrupted run drew.
* c2c pairs come from batches of whole images (``data.captions_per_image`` >= 2; the loader gives k
  captions of distinct languages per image): an image's captions are paired in order (1st-2nd,
  3rd-4th, ...). Captions of one image are never each other's negatives, in either task (group ids).
* Optional warm-up (``sum_of_hinges_steps``, not in the paper): the first steps sum the hinges over
  all negatives before VSE++'s max of hinges takes over; from random initialisation on the
  benchmark's random-init image features the max of hinges alone stays near 2 x margin.
* Images are precomputed features (``data.image_features: true``; the dataset's features stage).

Evaluation: image-caption retrieval on the evaluation split, per language (Recall@1/5/10 both ways
and their mean, SMALR's metric) and the average over languages (A), logged to TensorBoard and
written to ``OUT/eval/retrieval-stepNNNNNNNN.json`` with the model's parameter counts.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dist_train.config import ConfigError, check_known_keys
from dist_train.losses import triplet_ranking_loss
from dist_train.models.registry import build_model
from dist_train.train.config import TrainConfig, run_dir
from dist_train.train.data import Vocab

log = logging.getLogger(__name__)


@dataclass
class VSEObjectiveConfig:
    c2c: bool = True  # false: the baseline without caption-caption ranking
    p_c2c: float = 0.5  # probability that a step is caption-caption ranking
    margin: float = 0.2  # VSE++'s
    hard_negatives: int = 1  # 1: VSE++'s max of hinges (see dist_train/losses/triplet.py)
    # the first steps use the sum of hinges (hard_negatives=0) instead: a warm-up, not in the paper
    sum_of_hinges_steps: int = 0


def _objective_config(raw: dict[str, Any]) -> VSEObjectiveConfig:
    check_known_keys(raw, VSEObjectiveConfig, "objective", "a setting of the vsepp objective")
    cfg = VSEObjectiveConfig(**raw)
    if not 0.0 <= cfg.p_c2c <= 1.0:
        raise ConfigError(f"config key 'objective.p_c2c' = {cfg.p_c2c!r}: must be in [0, 1]")
    if cfg.hard_negatives < 0:
        raise ConfigError(f"config key 'objective.hard_negatives' = {cfg.hard_negatives!r}: must be >= 0")
    if cfg.sum_of_hinges_steps < 0:
        raise ConfigError(f"config key 'objective.sum_of_hinges_steps' = {cfg.sum_of_hinges_steps!r}: must be >= 0")
    return cfg


def step_task(seed: int, step: int, c2c: bool, p_c2c: float) -> str:
    """'c2c' or 'c2i' for a step, the same on every rank and on resume."""
    if not c2c:
        return "c2i"
    return "c2c" if random.Random(f"vsepp-task-{seed}-{step}").random() < p_c2c else "c2i"


def image_feature_statistics(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the precomputed features of a split's distinct images."""
    import io

    import numpy as np

    from dist_train.data.shards import iter_shard, list_finished_shards

    rows, seen = [], set()
    for tar in list_finished_shards(root, split):
        for raw in iter_shard(tar):
            image_id = json.loads(raw["json"])["image_id"]
            if image_id in seen or "features.npy" not in raw:
                continue
            seen.add(image_id)
            rows.append(np.load(io.BytesIO(raw["features.npy"]), allow_pickle=False).astype(np.float64))
    if len(rows) < 2:
        raise ConfigError(f"config key 'data.shards' = {str(root)!r}: {split} has {len(rows)} images with features; "
                          "make the dataset with features.enabled=true")
    features = torch.from_numpy(np.stack(rows))
    return features.mean(dim=0).float(), features.std(dim=0).float()


def caption_pairs(image_groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (a, b) pairing captions of one image in batch order: 1st with 2nd, 3rd with 4th..."""
    first, second = [], []
    waiting: dict[int, int] = {}
    for row, group in enumerate(image_groups.tolist()):
        if group in waiting:
            first.append(waiting.pop(group))
            second.append(row)
        else:
            waiting[group] = row
    return torch.tensor(first, dtype=torch.long), torch.tensor(second, dtype=torch.long)


class VSEObjective:
    def __init__(self, cfg: TrainConfig, vocab: Vocab):
        self.run = cfg
        self.vocab = vocab
        self.cfg = _objective_config(dict(cfg.objective))
        if not cfg.data.image_features:
            raise ConfigError("config key 'data.image_features' = false: the vsepp model reads precomputed image "
                              "features; set data.image_features=true (the dataset needs features.enabled=true)")
        if self.cfg.c2c and self.cfg.p_c2c > 0 and cfg.data.captions_per_image < 2:
            raise ConfigError(f"config key 'data.captions_per_image' = {cfg.data.captions_per_image}: caption-caption "
                              "ranking needs batches with at least 2 captions per image; set it to 2 or more, or "
                              "objective.c2c=false")

    def build_model(self) -> torch.nn.Module:
        model_cfg = {"vocab_size": self.vocab.size, "pad_id": self.vocab.pad_id, "bos_id": self.vocab.bos_id,
                     "eos_id": self.vocab.eos_id, "max_length": self.run.data.max_tokens,
                     **dict(self.run.model_config)}
        try:
            model = build_model(self.run.model, model_cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_config: {exc}") from None
        if model.config.standardize_image:
            mean, std = image_feature_statistics(self.run.data.shards, self.run.data.split)
            if mean.shape[0] != model.config.image_dim:
                raise ConfigError(f"config key 'model_config.image_dim' = {model.config.image_dim}: the features of "
                                  f"{self.run.data.shards} have {mean.shape[0]} dimensions")
            model.set_image_statistics(mean, std)
        return model

    def loss(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        c = self.cfg
        task = step_task(self.run.seed, step, c.c2c, c.p_c2c)
        hard_negatives = 0 if step < c.sum_of_hinges_steps else c.hard_negatives
        tokens = batch["tokens"].to(device)
        groups = batch["image_groups"].to(device)
        if task == "c2c":
            a, b = caption_pairs(batch["image_groups"])
            if len(a) == 0:
                raise RuntimeError("a caption-caption step found no two captions of one image in its batch; "
                                   "check data.captions_per_image")
            text = engine(tokens=tokens)["text"].float()
            loss = triplet_ranking_loss(text[a.to(device)], text[b.to(device)], margin=c.margin,
                                        hard_negatives=hard_negatives, group_ids=groups[a.to(device)])
        else:
            features = batch["features"].to(device, _float_dtype(engine))
            out = engine(tokens=tokens, features=features)
            loss = triplet_ranking_loss(out["text"].float(), out["image"].float(), margin=c.margin,
                                        hard_negatives=hard_negatives, group_ids=groups)
        # the engine averages metrics over a window's steps: a per-task loss would be diluted by the
        # other task's steps, so the log has the total and the share of c2c steps
        return loss, {"total": float(loss.detach()), "stat/c2c_fraction": float(task == "c2c")}

    # --- evaluation --------------------------------------------------------------------------------------------

    def evaluate(self, engine, cfg: TrainConfig, tb, step: int, device: torch.device) -> dict[str, Any]:
        """Image-caption retrieval per language on the evaluation split (rank 0 returns the figures)."""
        from dist_train.eval.embed import embed_batches, embed_tokens, read_split_captions, read_split_features
        from dist_train.eval.retrieval import cross_modal_recall

        captions = read_split_captions(cfg.data.shards, cfg.eval.split)
        image_ids = sorted(set(captions.image_ids))
        features = read_split_features(cfg.data.shards, cfg.eval.split, image_ids)
        model = engine.module
        dtype = _float_dtype(engine)
        was_training = engine.training
        engine.eval()
        try:
            image_emb = embed_batches(lambda x: model.encode_image(x.to(device, dtype)), len(image_ids),
                                      lambda idx: features[idx], cfg.eval.batch_size)
            text_emb = embed_tokens(lambda t: model.encode_text(t.to(device)), captions.tokens, self.vocab,
                                    cfg.data.max_tokens, cfg.eval.batch_size)
        finally:
            engine.train(was_training)
        if image_emb is None:  # not rank 0
            return {}
        index = {image_id: i for i, image_id in enumerate(image_ids)}
        recall = cross_modal_recall(image_emb, text_emb, [index[i] for i in captions.image_ids], captions.languages)
        result = {
            "step": step,
            "split": cfg.eval.split,
            "mean_recall": {lang: r.mean_recall for lang, r in recall.per_language.items()},
            "A": recall.average_mean_recall,
            "A_chance": recall.average_mean_recall_chance,
            "parameters": model.parameter_counts(),
            "objective": asdict(self.cfg),
            "retrieval": recall.to_metrics(),
        }
        values = {"eval/mean_recall_A": result["A"], "eval/mean_recall_A_chance": result["A_chance"]}
        values.update({f"eval/mean_recall/{lang}": v for lang, v in result["mean_recall"].items()})
        tb.scalars(values, step)
        tb.flush()
        path = run_dir(cfg) / "eval" / f"retrieval-step{step:08d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=float))
        log.info("step %d: mean recall A %.2f (chance %.2f); per language: %s", step, result["A"], result["A_chance"],
                 ", ".join(f"{lang} {v:.1f}" for lang, v in result["mean_recall"].items()))
        return result


def _float_dtype(engine) -> torch.dtype:
    return next(p.dtype for p in engine.parameters() if p.is_floating_point())


__all__ = ["VSEObjective", "VSEObjectiveConfig", "caption_pairs", "step_task"]
