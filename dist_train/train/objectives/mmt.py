"""The multimodal-translation objective: Q translates, and its final state reconstructs the image.

Batches are translation pairs with their image's precomputed features: `data.captions_per_image=2` with
`data.caption_languages=[source, target]` makes rows 2i and 2i+1 one image's source and target caption
(Multi30K task 1, or the built-in benchmark with its reference translations, configs/preprocess/mmt-en-de.yaml).
Each step computes Q's teacher-forced translation loss L_Q and h_T, then by `model_config.reconstruction`:

- "none": L_Q (the text-only baseline when `model_config.visual_context=false`, the paper's Q otherwise);
- "regression": L_Q + lambda_r * MSE(G(h_T), v) (the "imagination" baseline);
- "g-wgan" (Algorithm 1): `critic_steps` WGAN-GP steps of the feature critic D(v, h_T) on real v against
  v' = G([z, h_T]) (h_T and v' detached), then L_Q + lambda_a * (-D(G([z, h_T]), h_T)) for Q and G;
- "q-waae" (Algorithm 2): `critic_steps` WGAN-GP steps of the latent critic D(h) on prior samples
  h' ~ N(0, I) against h_T, then L_Q + lambda_r * MSE(G(h_T), v) + lambda_a * (-log sigmoid D(h_T)).

The critic has its own optimizer (Adam 2e-4, betas 0.5/0.9, constant rate) and so its own DeepSpeed engine,
as DeepSpeed's GAN example keeps one engine per optimizer; Q and G use the run's (optim.*, the paper's Adam
4e-4 with clipping 1). The critic engine's files are the `critic/` subfolder of each checkpoint, so a
checkpoint holds both and a resume is exact. The critic is small (3.2M parameters at the paper's sizes, 513
for Q-WAAE): its engine runs ZeRO stage 0 (data parallel) whatever the run's stage. The critic's steps reuse
the step's batch (its h_T and v), with fresh noise and interpolation draws each; the critic is frozen while
the adversarial term of Q and G back-propagates through it.

Evaluation (every `eval.every_steps` and at the end, on `eval.split`, normally val): beam-search
translations of the split's source captions scored with sacreBLEU against the image's target captions.
A better score than any before saves the model as an export folder `OUT_DIR/best/` (what `dist-train eval`
takes); after `patience` evaluations without one, training stops (the paper stops after 5 epochs without
improvement). The best score and the count are part of every checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from dist_train.config import ConfigError, check_known_keys
from dist_train.losses.adversarial import (
    LATENT_FORMS,
    REDUCTIONS,
    critic_loss_wgan,
    generator_loss_wgan,
    gradient_penalty,
    latent_critic_loss,
    latent_generator_loss,
    reconstruction_mse,
    wasserstein_estimate,
)
from dist_train.models.registry import build_model
from dist_train.train.config import TrainConfig, run_dir
from dist_train.train.data import Vocab

log = logging.getLogger(__name__)

BEST = "best"  # OUT_DIR/best: the export of the best validation score


@dataclass
class MMTObjectiveConfig:
    source_language: str = "en"
    target_language: str = "de"
    lambda_a: float = 0.2  # the adversarial term's weight (Table 2's best Q-WAAE: 0.2)
    lambda_r: float = 0.2  # the reconstruction MSE's weight, regression and Q-WAAE (Table 2: 0.2)
    lambda_gp: float = 10.0  # WGAN-GP's penalty weight (the paper's, for both forms)
    critic_steps: int = 5  # critic updates per Q/G update (lambda_critic of Algorithms 1 and 2)
    critic_lr: float = 2e-4
    critic_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    latent_generator_form: str = "log"  # Q-WAAE's term for Q: -log sigmoid D(h_T) ("log") or -D(h_T)
    reconstruction_reduction: str = "mean"  # MSE over elements (the released code's) or "sum" per sample
    beam_size: int = 12
    length_penalty: float = 1.0
    eval_sentences: int = 0  # source sentences translated at each evaluation (0: all of eval.split)
    patience: int = 5  # evaluations without a better score before training stops (0: never)
    logged_translations: int = 4  # translations shown in TensorBoard's TEXT tab per evaluation


def _objective_config(raw: dict[str, Any]) -> MMTObjectiveConfig:
    check_known_keys(raw, MMTObjectiveConfig, "objective", "a setting of the mmt objective")
    cfg = MMTObjectiveConfig(**raw)
    for key in ("lambda_a", "lambda_r", "lambda_gp"):
        if not getattr(cfg, key) >= 0:
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: must be >= 0")
    if not cfg.critic_lr > 0:
        raise ConfigError(f"config key 'objective.critic_lr' = {cfg.critic_lr!r}: must be positive")
    betas = cfg.critic_betas
    if not isinstance(betas, list) or len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"config key 'objective.critic_betas' = {betas!r}: two numbers in [0, 1)")
    for key in ("critic_steps", "beam_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: must be at least 1")
    for key in ("eval_sentences", "patience", "logged_translations"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key 'objective.{key}' = {getattr(cfg, key)!r}: must be >= 0")
    if cfg.latent_generator_form not in LATENT_FORMS:
        raise ConfigError(f"config key 'objective.latent_generator_form' = {cfg.latent_generator_form!r}: use one "
                          f"of {', '.join(LATENT_FORMS)}")
    if cfg.reconstruction_reduction not in REDUCTIONS:
        raise ConfigError(f"config key 'objective.reconstruction_reduction' = {cfg.reconstruction_reduction!r}: use "
                          f"one of {', '.join(REDUCTIONS)}")
    if cfg.source_language == cfg.target_language:
        raise ConfigError(f"config keys 'objective.source_language' and 'objective.target_language' are both "
                          f"{cfg.source_language!r}: translate between two languages")
    return cfg


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """`module`'s parameters take no gradient inside (the critic while Q and G learn to fool it)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class MMTObjective:
    def __init__(self, cfg: TrainConfig, vocab: Vocab):
        self.run = cfg
        self.vocab = vocab
        self.cfg = _objective_config(dict(cfg.objective))
        self.check_settings(cfg)
        self.critic_engine = None
        self.model_config = None
        # early stopping: {"step", "sacrebleu"} of the best evaluation, evaluations since, stopped
        self.best: dict[str, Any] | None = None
        self._eval_data = None  # (vocabulary, pairs, features) of eval.split, read at the first evaluation
        self.bad_evaluations = 0
        self.stopped = False

    @classmethod
    def check_settings(cls, cfg: TrainConfig) -> None:
        o = _objective_config(dict(cfg.objective))
        pair = [o.source_language, o.target_language]
        if not cfg.data.image_features:
            raise ConfigError("config key 'data.image_features' = false: the MMT objective reads precomputed image "
                              "features (set data.image_features=true on a dataset preprocessed with "
                              "features.enabled=true)")
        if cfg.data.captions_per_image != 2 or list(cfg.data.caption_languages) != pair:
            raise ConfigError(f"config keys 'data.captions_per_image' = {cfg.data.captions_per_image} and "
                              f"'data.caption_languages' = {list(cfg.data.caption_languages)}: MMT batches are "
                              f"translation pairs, set data.captions_per_image=2 data.caption_languages=[{pair[0]},"
                              f"{pair[1]}] (objective.source_language, objective.target_language)")
        if cfg.deepspeed.zero_stage == 3:
            raise ConfigError("config key 'deepspeed.zero_stage' = 3: the MMT objective translates and keeps its best "
                              "weights on rank 0 during training, which ZeRO-3's partitioned parameters do not "
                              "allow; use stage 0, 1 or 2 (Q is ~30M parameters at the paper's sizes)")

    @classmethod
    def check_data(cls, cfg: TrainConfig) -> None:
        """The settings, both languages in the training and evaluation splits, and image features."""
        from dist_train.train.data import feature_dim
        from dist_train.train.loader import language_counts

        cls.check_settings(cfg)
        o = _objective_config(dict(cfg.objective))
        for key, split in (("data.split", cfg.data.split), ("eval.split", cfg.eval.split)):
            found = language_counts(cfg.data.shards, split)
            missing = [lang for lang in (o.source_language, o.target_language) if not found.get(lang)]
            if missing:
                raise ConfigError(f"config key '{key}' = {split!r}: {cfg.data.shards} has no {', '.join(missing)} "
                                  f"captions in it (its languages: {', '.join(sorted(found)) or 'none'})")
        feature_dim(cfg.data.shards, cfg.data.split)

    # --- the models -------------------------------------------------------------------------------------------

    def build_model(self) -> torch.nn.Module:
        from dist_train.train.data import feature_dim

        raw = dict(self.run.model_config)
        if "with_critic" in raw:
            raise ConfigError("config key 'model_config.with_critic': the objective decides it (the critic trains "
                              "as an engine of its own)")
        model_cfg = {"source_vocab_size": self.vocab.size, "target_vocab_size": self.vocab.size,
                     "pad_id": self.vocab.pad_id, "bos_id": self.vocab.bos_id, "eos_id": self.vocab.eos_id,
                     "feature_dim": feature_dim(self.run.data.shards, self.run.data.split),
                     "max_len": self.run.data.max_tokens - 1, **raw, "with_critic": False}
        try:
            model = build_model(self.run.model, model_cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_config: {exc}") from None
        self.model_config = model.config
        return model

    def build_engines(self, cfg: TrainConfig, total_steps: int, world_size: int) -> dict[str, Any]:
        """The critic's own DeepSpeed engine (G-WGAN and Q-WAAE), {} for the forms without a critic."""
        import deepspeed

        from dist_train.models.mmt import build_critic
        from dist_train.train.engine import deepspeed_config

        critic = build_critic(self.model_config)
        if critic is None:
            return {}
        ds = deepspeed_config(cfg, total_steps, world_size)
        ds["optimizer"]["params"].update(lr=self.cfg.critic_lr, betas=list(self.cfg.critic_betas), weight_decay=0.0)
        ds.pop("scheduler", None)  # a constant rate, as the paper's critic
        ds["zero_optimization"] = {"stage": 0}
        ds["gradient_clipping"] = 0.0  # the gradient penalty keeps the critic's gradients in check
        ds["bf16"], ds["fp16"] = {"enabled": False}, {"enabled": False}  # scores and penalty in fp32
        self.critic_engine, _, _, _ = deepspeed.initialize(model=critic, model_parameters=list(critic.parameters()),
                                                           config=ds)
        return {"critic": self.critic_engine}

    # --- one step ---------------------------------------------------------------------------------------------

    def _pairs(self, batch: dict, device: torch.device):
        """(source tokens, target tokens, fp32 features) of a batch of (source, target) rows."""
        tokens, features = batch["tokens"].to(device), batch["features"]
        src, tgt = tokens[0::2], tokens[1::2]
        v = features[0::2].to(device, torch.float32)
        return src, tgt, v

    def _critic_steps(self, model, h: torch.Tensor, v: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """`critic_steps` updates of the critic on this batch's detached h_T and features v.

        The critic is called as its module, not through its engine: DeepSpeed hooks an engine's outputs so
        that only its own backward may run through them, and the gradient penalty differentiates the
        critic's scores with torch.autograd.grad (the generator's term back-propagates through it too).
        The engine still does the update: `backward` (gradients averaged over ranks) and `step`."""
        critic = self.critic_engine.module
        sums = {"critic": 0.0, "wasserstein": 0.0, "gradient_penalty": 0.0}
        h_model = h.to(next(model.parameters()).dtype)  # G's input in the model's precision
        for _ in range(self.cfg.critic_steps):
            if model.config.reconstruction == "g-wgan":
                with torch.no_grad():
                    fake = model.reconstruct(h_model, generator=generator).float()
                real, conditions = v, (h,)
                d_real, d_fake = critic(real, h), critic(fake, h)
                base = critic_loss_wgan(d_real, d_fake)
            else:  # q-waae: prior samples are "real", Q's codes "fake"
                real, fake, conditions = model.sample_prior(h.shape[0], like=h, generator=generator), h, ()
                d_real, d_fake = critic(real), critic(fake)
                base = latent_critic_loss(d_real, d_fake)
            penalty = gradient_penalty(critic, real, fake, *conditions, generator=generator)
            loss = base + self.cfg.lambda_gp * penalty
            self.critic_engine.backward(loss)
            self.critic_engine.step()
            sums["critic"] += float(loss.detach())
            sums["wasserstein"] += float(wasserstein_estimate(d_real, d_fake))
            sums["gradient_penalty"] += float(penalty.detach())
        return {k: v / self.cfg.critic_steps for k, v in sums.items()}

    def backward_step(self, engine, batch: dict, generator: torch.Generator, device: torch.device, step: int):
        """The critic's steps (when the form has a critic), then Q and G's loss, backward on the main engine."""
        model = engine.module
        c = model.config
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        src, tgt, v = self._pairs(batch, device)
        out = engine(src, tgt, v.to(dtype) if c.visual_context else None)
        loss, h = out["loss"], out["h_T"]
        metrics: dict[str, float] = {"translation": float(loss.detach())}
        if c.reconstruction == "regression":
            rec = reconstruction_mse(model.reconstruct(h).float(), v, self.cfg.reconstruction_reduction)
            loss = loss + self.cfg.lambda_r * rec
            metrics["reconstruction"] = float(rec.detach())
        elif c.reconstruction in ("g-wgan", "q-waae"):
            metrics.update(self._critic_steps(model, h.detach().float(), v, generator))
            with frozen(self.critic_engine.module):
                if c.reconstruction == "g-wgan":
                    fake = model.reconstruct(h, generator=generator).float()
                    adversarial = generator_loss_wgan(self.critic_engine.module(fake, h.float()))
                    distance = reconstruction_mse(fake.detach(), v, self.cfg.reconstruction_reduction)
                    loss = loss + self.cfg.lambda_a * adversarial
                else:
                    rec = reconstruction_mse(model.reconstruct(h).float(), v, self.cfg.reconstruction_reduction)
                    adversarial = latent_generator_loss(self.critic_engine.module(h.float()),
                                                        form=self.cfg.latent_generator_form)
                    distance = rec.detach()
                    loss = loss + self.cfg.lambda_r * rec + self.cfg.lambda_a * adversarial
            metrics["adversarial"] = float(adversarial.detach())
            metrics["reconstruction"] = float(distance)
        metrics["total"] = float(loss.detach())
        engine.backward(loss)
        return metrics

    # --- early stopping ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations, "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.bad_evaluations = int(state.get("bad_evaluations", 0))
        self.stopped = bool(state.get("stopped", False))

    def should_stop(self) -> bool:
        return self.stopped

    def stop_reason(self) -> str:
        best = self.best or {}
        return (f"{self.bad_evaluations} evaluations without a better {self.run.eval.split} sacreBLEU than "
                f"{best.get('sacrebleu', float('nan')):.2f} (step {best.get('step')}; objective.patience="
                f"{self.cfg.patience}); its weights are in {run_dir(self.run) / BEST}")

    def _save_best(self, model, step: int, score: float) -> None:
        """The current weights as the export folder OUT_DIR/best (rank 0; ZeRO stage <= 2 keeps them whole)."""
        import yaml

        from dist_train.config import to_dict, without_storage_secrets
        from dist_train.data.shards import atomic_write_bytes
        from dist_train.storage import location
        from dist_train.train.engine import vocab_sha256
        from dist_train.train.export import export_config, export_tensors, write_weights

        out = run_dir(self.run) / BEST
        out.mkdir(parents=True, exist_ok=True)
        source = f"{run_dir(self.run) / 'checkpoints'} at step {step} ({self.run.eval.split} sacreBLEU {score:.2f})"
        write_weights(export_tensors(model.state_dict()), out / "model.safetensors", source)
        vocab = location(self.run.data.shards) / "spm.model"
        atomic_write_bytes(out / "spm.model", vocab.read_bytes())
        config = export_config({"model": self.run.model, "config": model.config_dict()},
                               without_storage_secrets(to_dict(self.run)), source, vocab_sha256(vocab))
        config["selected"] = {"split": self.run.eval.split, "metric": "sacrebleu", "value": score, "step": step}
        atomic_write_bytes(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    # --- evaluation -------------------------------------------------------------------------------------------

    def evaluate(self, engine, cfg: TrainConfig, tb, step: int, device: torch.device) -> dict[str, Any]:
        """sacreBLEU of beam-search translations of `eval.split` (rank 0), the best weights kept, patience."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return {}
        from dist_train.eval.embed import read_split_captions, read_split_features
        from dist_train.eval.generation_metrics import sacre_bleu
        from dist_train.eval.translation import translate, translation_pairs
        from dist_train.preprocess.vocab import load_vocab
        from dist_train.storage import location

        model = engine.module
        o = self.cfg
        if self._eval_data is None:  # the split does not change during a run: read it once
            sp = load_vocab((location(cfg.data.shards) / "spm.model").read_bytes())
            pairs = translation_pairs(read_split_captions(cfg.data.shards, cfg.eval.split), o.source_language,
                                      o.target_language)
            if o.eval_sentences:
                pairs = pairs[: o.eval_sentences]
            features = None
            if model.config.visual_context:
                features = read_split_features(cfg.data.shards, cfg.eval.split, [p.image_id for p in pairs])
            self._eval_data = sp, pairs, features
        sp, pairs, features = self._eval_data
        if features is not None:
            features = features.to(next(p.dtype for p in model.parameters() if p.is_floating_point()))
        ids = translate([model], [p.source_tokens for p in pairs], features, max_tokens=cfg.data.max_tokens,
                        beam_size=o.beam_size, length_penalty=o.length_penalty, batch_size=cfg.eval.batch_size,
                        device=device)
        hyps = [sp.decode(t) for t in ids]
        refs = [p.references for p in pairs]
        score, signature = sacre_bleu(hyps, refs, o.target_language)
        improved = self.best is None or score > self.best["sacrebleu"]
        if improved:
            self.best = {"step": step, "sacrebleu": score}
            self.bad_evaluations = 0
            self._save_best(model, step, score)
        else:
            self.bad_evaluations += 1
            if o.patience and self.bad_evaluations >= o.patience:
                self.stopped = True
        pair = f"{o.source_language}->{o.target_language}"
        result = {"step": step, "split": cfg.eval.split, "pair": pair, "sentences": len(pairs), "sacrebleu": score,
                  "sacrebleu_signature": signature, "best": dict(self.best), "improved": improved,
                  "bad_evaluations": self.bad_evaluations, "stopped": self.stopped,
                  "samples": [{"source": p.source_text, "hypothesis": h, "references": p.references}
                              for p, h in zip(pairs[: o.logged_translations], hyps)]}
        tb.scalars({"eval/sacrebleu": score, "eval/best_sacrebleu": self.best["sacrebleu"]}, step)
        if result["samples"]:
            tb.text("eval/translations", "\n".join(
                f"- `{s['hypothesis']}` (source: {s['source']}; reference: {s['references'][0]})"
                for s in result["samples"]), step)
        tb.flush()
        path = run_dir(cfg) / "eval" / f"translations-step{step:08d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**result, "objective": asdict(o)}, indent=2, ensure_ascii=False, default=float))
        log.info("step %d: %s on %s: sacreBLEU %.2f (best %.2f at step %d%s)", step, pair, cfg.eval.split, score,
                 self.best["sacrebleu"], self.best["step"],
                 f"; {self.bad_evaluations} of {o.patience} without a better one" if not improved and o.patience else "")
        return result


__all__ = ["BEST", "MMTObjective", "MMTObjectiveConfig", "frozen"]
