"""One step of each MMT reconstruction form through the real DeepSpeed engines, in a process of its own:
prints, as JSON, which of Q, G and D each phase changed (tests/train/test_mmt.py reads it).

    python tests/train/mmt_one_step.py SHARDS OUT FORM
"""

from __future__ import annotations

import json
import sys

import torch


def snapshot(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()} if module is not None else {}


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[n], after[n]) for n in before)


def main(shards: str, out: str, form: str) -> dict:
    import deepspeed

    from dist_train.config import load_config
    from dist_train.train.config import TrainConfig, validate
    from dist_train.train.data import build_train_loader, dataset_vocab
    from dist_train.train.engine import deepspeed_config, parameter_groups, setup_process_group
    from dist_train.train.objectives import build_objective
    from tests.conftest import REPO

    cfg = load_config(TrainConfig, REPO / "configs" / "mmt-tiny.yaml",
                      [f"out_dir={out}", f"data.shards={shards}", f"model_config.reconstruction={form}",
                       "objective.critic_steps=2", "optim.warmup_steps=1", "max_steps=4"], validate)
    rank, world, device = setup_process_group()
    torch.manual_seed(0)
    objective = build_objective(cfg, dataset_vocab(cfg))
    model = objective.build_model()
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=parameter_groups(model, 0.0),
                                           config=deepspeed_config(cfg, 4, world))
    for group in engine.optimizer.param_groups:  # the warm-up's first rate is 0: no update would show
        group["lr"] = 1e-3
    extra = objective.build_engines(cfg, 4, world)
    batch = next(iter(build_train_loader(cfg, dataset_vocab(cfg), rank, world)))
    generator = torch.Generator().manual_seed(0)
    module = engine.module
    q = lambda: {**snapshot(module.encoder), **snapshot(module.decoder)}  # noqa: E731
    g = lambda: snapshot(module.generator)  # noqa: E731
    d = lambda: snapshot(extra["critic"].module) if extra else {}  # noqa: E731
    result = {"engines": sorted(extra), "critic_in_model": module.critic is not None}
    if extra:  # phase 1: the critic's steps alone
        q0, g0, d0 = q(), g(), d()
        src, tgt, v = objective._pairs(batch, device)
        with torch.no_grad():
            h = engine(src, tgt, v)["h_T"]
        metrics = objective._critic_steps(module, h.float(), v, generator)
        result["critic_steps"] = {"Q": changed(q0, q()), "G": changed(g0, g()), "D": changed(d0, d()),
                                  "metrics": sorted(metrics)}
        objective._critic_steps = lambda *args: {}  # phase 2 measures Q and G's update alone
    q0, g0, d0 = q(), g(), d()
    metrics = objective.backward_step(engine, batch, generator, device, 0)
    critic_grads = [p.grad for p in extra["critic"].module.parameters()] if extra else []
    engine.step()
    result["q_g_step"] = {"Q": changed(q0, q()), "G": changed(g0, g()) if g0 else None,
                          "D": changed(d0, d()) if d0 else None, "metrics": sorted(metrics),
                          "critic_grads": any(x is not None and bool(x.abs().sum() > 0) for x in critic_grads)}
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    print("RESULT " + json.dumps(main(*sys.argv[1:4])))
