"""Regenerate the adversarial-reconstruction MMT table of docs/results.md: train each run, evaluate it, print the table.

Every run is `configs/mmt-demo.yaml` (en -> de on the built-in benchmark with parallel captions,
`shards/world-demo-parallel2`, made on first use by `dist-train demo --stage mmt` or the commands in
configs/preprocess/mmt-en-de.yaml) with one reconstruction form and seeds 0, 1 and 2: DeepSpeed ZeRO-2 in one
process per run (`--jobs` runs at a time, one thread each), early stopping on validation sacreBLEU, and the best
weights (`RUN/best`) evaluated with `dist-train eval` on the test split (sacreBLEU with its signature, METEOR
1.5). Each configuration also gets its 3 seeds decoded as one ensemble (`--ensemble`, the paper reports
ensembles). A run or evaluation whose files exist is not made again.

    python tools/results/mmt.py                             # everything, the table on stdout
    python tools/results/mmt.py --rows text,text-qwaae      # some configurations only
    python tools/results/mmt.py --write docs/results.md     # also replace the table there
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tables import write_between  # tools/results/tables.py

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/mmt-demo.yaml"
SHARDS = "shards/world-demo-parallel2"
BEGIN, END = "<!-- mmt-table:begin -->", "<!-- mmt-table:end -->"
SEEDS = (0, 1, 2)
STEPS_PER_EPOCH = 20  # 640 training pairs in batches of 32
CURVE_EPOCHS = (2, 4, 6)  # the validation score on the way: how fast each form learns
TEXT_ONLY = "model_config.visual_context=false"

# name -> (what it is, training overrides)
ROWS = {
    "text": ("text-only Q", [TEXT_ONLY, "model_config.reconstruction=none"]),
    "text-regression": ("text-only Q + regression (imagination)", [TEXT_ONLY, "model_config.reconstruction=regression"]),
    "text-gwgan": ("text-only Q + G-WGAN", [TEXT_ONLY, "model_config.reconstruction=g-wgan"]),
    "text-qwaae": ("text-only Q + Q-WAAE", [TEXT_ONLY, "model_config.reconstruction=q-waae"]),
    "visual": ("Q with v (the paper's baseline)", ["model_config.reconstruction=none"]),
    "visual-qwaae": ("Q with v + Q-WAAE (the paper's model)", ["model_config.reconstruction=q-waae"]),
}


def run_dir(runs: Path, name: str, seed: int) -> Path:
    return runs / f"mmt-{name}-seed{seed}"


def train_command(runs: Path, name: str, seed: int) -> list[str]:
    return ["dist-train", "train", "--config", CONFIG, f"out_dir={run_dir(runs, name, seed)}", f"data.shards={SHARDS}",
            f"seed={seed}", *ROWS[name][1], "--nproc-per-node", "1"]


def eval_command(runs: Path, name: str, seed: int | None) -> list[str]:
    if seed is not None:
        run = run_dir(runs, name, seed)
        return ["dist-train", "eval", "--checkpoint", f"{run}/best", "--shards", SHARDS, "--out", f"{run}/eval-test"]
    first, *others = [run_dir(runs, name, s) for s in SEEDS]
    return ["dist-train", "eval", "--checkpoint", f"{first}/best", "--shards", SHARDS, "--out",
            f"{runs}/mmt-{name}-ensemble/eval-test", "--ensemble", ",".join(f"{r}/best" for r in others)]


def _run(cmd: list[str]) -> None:
    print("$", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), "-q", *cmd[1:]], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL)
    print(f"  ({time.perf_counter() - t0:.0f} s) {cmd[1]} {cmd[5] if len(cmd) > 5 else ''}", flush=True)


def _metrics(path: Path, cmd: list[str]) -> dict:
    if not path.is_file():
        _run(cmd)
    return json.loads(path.read_text())["translation"]


def measure(runs: Path, name: str, seed: int) -> dict:
    run = ROOT / run_dir(runs, name, seed)
    if not (run / "best" / "model.safetensors").is_file() or not (run / "checkpoints" / "latest").is_file():
        _run(train_command(runs, name, seed))
    result = _metrics(run / "eval-test" / "metrics.json", eval_command(runs, name, seed))
    trained = sorted((run / "eval").glob("translations-step*.json"))
    last = json.loads(trained[-1].read_text())
    result["best_step"], result["val_sacrebleu"] = last["best"]["step"], last["best"]["sacrebleu"]
    result["stopped_at"], result["stopped_early"] = last["step"], last["stopped"]
    result["val_curve"] = {json.loads(p.read_text())["step"]: json.loads(p.read_text())["sacrebleu"] for p in trained}
    return result


def _cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


def chance_bleu(seed: int = 0) -> float:
    """sacreBLEU of translations drawn at random from the training split's German captions (the test references)."""
    import random

    sys.path.insert(0, str(ROOT))
    from dist_train.eval.embed import read_split_captions
    from dist_train.eval.generation_metrics import sacre_bleu
    from dist_train.eval.translation import translation_pairs

    pairs = translation_pairs(read_split_captions(ROOT / SHARDS, "test"), "en", "de")
    train = read_split_captions(ROOT / SHARDS, "train")
    german = [t for t, lang in zip(train.texts, train.languages) if lang == "de"]
    rng = random.Random(seed)
    return sacre_bleu([rng.choice(german) for _ in pairs], [p.references for p in pairs], "de")[0]


def table(results: dict[str, list[dict]], ensembles: dict[str, dict], runs: Path, chance: float) -> str:
    some = next(r for rs in results.values() for r in rs)
    lines = [f"en -> de, test split: {some['sentences']} unseen scenes, {some['references_per_sentence']:.2f} German "
             f"references each on average; mean (min-max) over seeds {', '.join(map(str, SEEDS))}, and the 3 seeds "
             "decoded as one ensemble. sacreBLEU and METEOR x100 of the best validation checkpoint (early stopping, "
             "patience 5 epochs); then validation sacreBLEU after 2, 4 and 6 epochs (one evaluation per epoch).", "",
             "| configuration | test sacreBLEU | test METEOR | ensemble of 3: sacreBLEU | METEOR | "
             + " | ".join(f"val, epoch {e}" for e in CURVE_EPOCHS) + " | best step (stopped at) |",
             "|---|" + "---:|" * (5 + len(CURVE_EPOCHS))]
    for name, rs in results.items():
        ens = ensembles.get(name)
        meteor = [100 * r["meteor"] for r in rs if r.get("meteor") is not None]
        ensemble = "n/a | n/a"
        if ens:
            ensemble = f"{ens['sacrebleu']:.1f} | " + (f"{100 * ens['meteor']:.1f}" if ens.get("meteor") is not None
                                                       else "n/a")
        curve = [_cell([r["val_curve"][e * STEPS_PER_EPOCH] for r in rs]) if all(
            e * STEPS_PER_EPOCH in r["val_curve"] for r in rs) else "n/a" for e in CURVE_EPOCHS]
        lines.append(f"| {ROWS[name][0]} | {_cell([r['sacrebleu'] for r in rs])} | "
                     f"{_cell(meteor) if meteor else 'n/a'} | {ensemble} | " + " | ".join(curve) + " | "
                     + ", ".join(f"{r['best_step']} ({r['stopped_at']})" for r in rs) + " |")
    lines.append(f"| chance: a random training sentence in German for each source | {chance:.1f} | n/a | n/a | n/a | "
                 + " | ".join("n/a" for _ in CURVE_EPOCHS) + " | n/a |")
    lines += ["", f"sacreBLEU signature: {some['sacrebleu_signature']}. METEOR: {some['meteor_modules']}.", "",
              "Commands (from the repository root):", "", "```"]
    for name in results:
        for seed in SEEDS:
            lines.append(shlex.join(train_command(runs, name, seed)))
            lines.append(shlex.join(eval_command(runs, name, seed)))
        lines.append(shlex.join(eval_command(runs, name, None)))
    lines.append("```")
    return "\n".join(lines)


def checks(results: dict[str, list[dict]]) -> list[str]:
    """The paper's claims, as measured (means over the seeds)."""
    mean = {name: statistics.fmean(r["sacrebleu"] for r in rs) for name, rs in results.items()}
    epoch = CURVE_EPOCHS[1] * STEPS_PER_EPOCH
    early = {name: statistics.fmean(r["val_curve"].get(epoch, float("nan")) for r in rs) for name, rs in results.items()}
    out = [f"{ROWS[name][0]}: validation sacreBLEU {early[name]:.1f} after {CURVE_EPOCHS[1]} epochs" for name in early]
    for form in ("text-gwgan", "text-qwaae"):
        for base in ("text", "text-regression"):
            if form in mean and base in mean:
                verdict = "above" if mean[form] > mean[base] else "NOT above"
                out.append(f"{ROWS[form][0]} {verdict} {ROWS[base][0]}: sacreBLEU {mean[form]:.1f} vs {mean[base]:.1f}")
    if "visual-qwaae" in mean and "visual" in mean:
        verdict = "above" if mean["visual-qwaae"] > mean["visual"] else "NOT above"
        out.append(f"{ROWS['visual-qwaae'][0]} {verdict} {ROWS['visual'][0]}: sacreBLEU {mean['visual-qwaae']:.1f} "
                   f"vs {mean['visual']:.1f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    parser.add_argument("--runs", type=Path, default=Path("runs/results-mmt"))
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at a time (one thread each)")
    parser.add_argument("--write", type=Path, help=f"replace the table between {BEGIN} and {END} in this file")
    args = parser.parse_args()
    names = [n for n in args.rows.split(",") if n]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    jobs = [(name, seed) for name in names for seed in SEEDS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        measured = dict(zip(jobs, pool.map(lambda job: measure(args.runs, *job), jobs)))
    results = {name: [measured[(name, s)] for s in SEEDS] for name in ROWS if name in names}
    ensembles = {name: _metrics(ROOT / args.runs / f"mmt-{name}-ensemble" / "eval-test" / "metrics.json",
                                eval_command(args.runs, name, None)) for name in results}
    text = table(results, ensembles, args.runs, chance_bleu()) + "\n\n" + "\n".join(f"- {c}" for c in checks(results))
    print(text)
    if args.write:
        write_between(args.write, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
