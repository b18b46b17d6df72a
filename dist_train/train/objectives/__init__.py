"""Training objectives: what one step computes for a model, and how the run evaluates it.

An objective builds its model from the registry, turns a loader batch into the model's inputs on the
training device (augmentation and masking happen here, batched), combines the losses of
`dist_train.losses`, and evaluates with `dist_train.eval`. The engine knows none of these details:
it calls `build_model()`, `loss(engine, batch, generator, device, step)` and
`evaluate(engine, cfg, tb, step, device)`. One module per model family; `OBJECTIVES` maps the
config's `model` name to its objective. An objective may also check the data before training starts
(a classmethod `check_data(cfg)` raising ConfigError), so that a run that could not evaluate fails
before its first step rather than after its last.
"""

from __future__ import annotations

from dist_train.config import ConfigError
from dist_train.train.config import TrainConfig
from dist_train.train.data import Vocab
from dist_train.train.objectives.globetrotter import GlobetrotterObjective, GlobetrotterObjectiveConfig
from dist_train.train.objectives.mmt import MMTObjective
from dist_train.train.objectives.pivot import PivotObjective
from dist_train.train.objectives.smalr import SmalrObjective
from dist_train.train.objectives.vse import VSEObjective

OBJECTIVES = {"globetrotter": GlobetrotterObjective, "mmt": MMTObjective, "pivot": PivotObjective, "smalr": SmalrObjective,
              "vsepp": VSEObjective}


def build_objective(cfg: TrainConfig, vocab: Vocab):
    if cfg.model not in OBJECTIVES:
        raise ConfigError(f"config key 'model' = {cfg.model!r}: no training objective for it "
                          f"(known: {', '.join(sorted(OBJECTIVES))})")
    return OBJECTIVES[cfg.model](cfg, vocab)


def check_training_data(cfg: TrainConfig) -> None:
    """The objective's own checks of the dataset (e.g. that its evaluation split can be evaluated);
    raises ConfigError with a one-line message. Reads no more than the samples' metadata."""
    check = getattr(OBJECTIVES.get(cfg.model), "check_data", None)
    if check is not None:
        check(cfg)


__all__ = ["build_objective", "check_training_data", "OBJECTIVES", "GlobetrotterObjective", "GlobetrotterObjectiveConfig"]
