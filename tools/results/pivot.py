"""Regenerate the visual-pivoting tables of docs/results.md: train each run, evaluate it, print the tables.

Rows of the main table are `configs/pivot-demo.yaml` (pivot layer stage4, chosen on validation) with seeds 0, 1 and 2 (DeepSpeed ZeRO-2, 2 local
processes, on the built-in benchmark's task-2 preset `shards/world-pivot`, made on first use), each
evaluated with `dist-train eval` (Table 1 of the paper for en and de, on the test split); the table gives
the mean and the spread (min-max) over the seeds. A second table gives the same for pivot layer stage3 (the
layer first tried); the selection table trains one seed with each pivot layer and evaluates
feedback-propagation settings on the validation split. A run or evaluation whose
files exist is not made again.

    python tools/results/pivot.py                           # everything, tables on stdout
    python tools/results/pivot.py --rows seed0,seed1,seed2  # the main table only
    python tools/results/pivot.py --write docs/results.md   # also replace the tables there
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tables import run_tool  # tools/results/tables.py

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/pivot-demo.yaml"
SHARDS = "shards/world-pivot"
BEGIN, END = "<!-- pivot-table:begin -->", "<!-- pivot-table:end -->"
PAIR = ("en", "de")

CHOSEN = ["--pivot-steps", "40", "--pivot-lr", "0.1"]  # the best of the selection rows (mean CIDEr of pivoting)

# name -> (what it is, training overrides, evaluation split, evaluation options)
STAGE4 = "model_config.pivot_layer=stage4"  # chosen on the validation split (the selection rows)
ROWS = {
    "seed0": ("seed 0", ["seed=0", STAGE4], "test", CHOSEN),
    "seed1": ("seed 1", ["seed=1", STAGE4], "test", CHOSEN),
    "seed2": ("seed 2", ["seed=2", STAGE4], "test", CHOSEN),
    "stage3-seed0": ("stage3, seed 0", ["seed=0"], "test", CHOSEN),
    "stage3-seed1": ("stage3, seed 1", ["seed=1"], "test", CHOSEN),
    "stage3-seed2": ("stage3, seed 2", ["seed=2"], "test", CHOSEN),
    "val-20x0.001": ("stage3, 20 steps x lr 0.001 (the paper's)", ["seed=0"], "val",
                     ["--pivot-steps", "20", "--pivot-lr", "0.001"]),
    "val-40x0.01": ("stage3, 40 x 0.01 (the paper's other)", ["seed=0"], "val",
                    ["--pivot-steps", "40", "--pivot-lr", "0.01"]),
    "val-40x0.03": ("stage3, 40 x 0.03", ["seed=0"], "val", ["--pivot-steps", "40", "--pivot-lr", "0.03"]),
    "val-40x0.1": ("stage3, 40 x 0.1", ["seed=0"], "val", CHOSEN),
    "val-40x0.3": ("stage3, 40 x 0.3", ["seed=0"], "val", ["--pivot-steps", "40", "--pivot-lr", "0.3"]),
    "val-stage2": ("stage2, 40 x 0.1", ["seed=0", "model_config.pivot_layer=stage2"], "val", CHOSEN),
    "val-stage4": ("stage4, 40 x 0.1", ["seed=0", "model_config.pivot_layer=stage4"], "val", CHOSEN),
}
MAIN = ("seed0", "seed1", "seed2")  # the configuration of configs/pivot-demo.yaml
# the same table for other configurations measured on the test split: title -> rows
OTHER_MAIN = {"pivot stage3 (the layer first tried)": ("stage3-seed0", "stage3-seed1", "stage3-seed2")}
MAIN_ROWS = set(MAIN) | {n for rows in OTHER_MAIN.values() for n in rows}


def run_name(name: str) -> str:
    """Rows that train the same model share its run (seed0 and the stage3 validation rows)."""
    overrides = ROWS[name][1]
    layer = next((o.split("=", 1)[1] for o in overrides if o.startswith("model_config.pivot_layer=")), "stage3")
    seed = next(o.split("=", 1)[1] for o in overrides if o.startswith("seed="))
    return f"pivot-{layer}-seed{seed}"


def commands(name: str, runs: Path, processes: int) -> tuple[list[str], list[str]]:
    run = runs / run_name(name)
    _, overrides, split, options = ROWS[name]
    train = ["dist-train", "train", "--config", CONFIG, "--nproc-per-node", str(processes), f"out_dir={run}",
             *overrides]
    evaluate = ["dist-train", "eval", "--checkpoint", f"{run}/checkpoints", "--shards", SHARDS, "--out",
                f"{run}/eval-{name}", "--split", split, "--pairs", "-".join(PAIR), *options]
    return train, evaluate


def _run(cmd: list[str]) -> None:
    print("$", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def run_row(name: str, runs: Path, processes: int) -> dict:
    train, evaluate = commands(name, runs, processes)
    run = (runs if runs.is_absolute() else ROOT / runs) / run_name(name)
    if not (run / "checkpoints" / "latest").is_file() or not list((run / "eval").glob("captions-step*.json")):
        _run(train)
    metrics = run / f"eval-{name}" / "metrics.json"
    if not metrics.is_file():
        _run(evaluate)
    (pair,) = json.loads(metrics.read_text())["pivot"]
    return pair


def _cells(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


ORDER = ("image->{a}", "image+{b}->{a}", "{b}->{a}", "noise->{a}", "retrieval {b}->{a}")


def _row_names() -> list[str]:
    a, b = PAIR
    return [t.format(a=x, b=y) for x, y in ((b, a), (a, b)) for t in ORDER]


def _main_table(main: list[dict], title: str) -> list[str]:
    lines = [f"{title}: test split, {main[0]['images']} images, mean (min-max) over {len(main)} seed(s); "
             "scores x100, each hypothesis against all references of its language.", "",
             "| row | BLEU-4 | ROUGE-L | CIDEr | METEOR |", "|---|---:|---:|---:|---:|"]
    for row in _row_names():
        cells = []
        for metric in ("bleu4", "rouge_l", "cider", "meteor"):
            values = [100 * r["rows"][row][metric] for r in main if r["rows"][row].get(metric) is not None]
            cells.append(_cells(values) if values else "n/a")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def table(results: dict[str, dict], runs: Path, processes: int) -> str:
    lines = []
    main = [results[n] for n in MAIN if n in results]
    if main:
        lines += _main_table(main, "configs/pivot-demo.yaml (pivot stage4, 40 x 0.1)")
        modules = sorted({r["rows"][row]["meteor_modules"] for r in main for row in _row_names()})
        signature = main[0]["rows"][_row_names()[0]]["sacrebleu_signature"]
        lines += ["", f"METEOR: {'; '.join(modules)}. sacreBLEU of every row is in metrics.json ({signature})."]
    for title, names in OTHER_MAIN.items():
        other = [results[n] for n in names if n in results]
        if other:
            lines += [""] + _main_table(other, title)
    selection = [n for n in ROWS if n not in MAIN_ROWS and n in results]
    if selection:
        a, b = PAIR
        pivoting = [f"{b}->{a}", f"{a}->{b}", f"image+{b}->{a}", f"image+{a}->{b}"]
        lines += ["", "Selection on the validation split (seed 0, 100 images): CIDEr x100 of the pivoting rows, "
                  "their mean (the criterion), and the rows without pivoting for reference.", "",
                  "| pivot layer, feedback propagation | " + " | ".join(pivoting) + " | mean | "
                  f"image->{a} | image->{b} | noise->{a} | noise->{b} |", "|---" + "|---:" * 9 + "|"]
        for name in selection:
            rows = results[name]["rows"]
            values = [100 * rows[r]["cider"] for r in pivoting]
            plain = [100 * rows[r]["cider"] for r in (f"image->{a}", f"image->{b}", f"noise->{a}", f"noise->{b}")]
            lines.append(f"| {ROWS[name][0]} | " + " | ".join(f"{v:.1f}" for v in values)
                         + f" | **{statistics.fmean(values):.1f}** | " + " | ".join(f"{v:.1f}" for v in plain) + " |")
    lines += ["", "Commands (from the repository root):", "", "```"]
    for name in results:
        for cmd in commands(name, runs, processes):
            lines.append(shlex.join(cmd))
    lines.append("```")
    return "\n".join(lines)


def checks(results: dict[str, dict]) -> list[str]:
    """The paper's orderings, as measured (mean over the seeds of configs/pivot-demo.yaml)."""
    main = [results[n] for n in MAIN if n in results]
    if not main:
        return []
    a, b = PAIR

    def mean(row: str, metric: str = "cider") -> float:
        return statistics.fmean(r["rows"][row][metric] for r in main)

    out = []
    for tgt, src in ((a, b), (b, a)):
        with_text, alone = mean(f"image+{src}->{tgt}"), mean(f"image->{tgt}")
        out.append(f"image + {src} -> {tgt} {'above' if with_text > alone else 'NOT above'} image -> {tgt}: "
                   f"CIDEr {100 * with_text:.1f} vs {100 * alone:.1f}")
        pivot, noise = mean(f"{src}->{tgt}"), mean(f"noise->{tgt}")
        out.append(f"{src} -> {tgt} {'above' if pivot > noise else 'NOT above'} the noise image: "
                   f"CIDEr {100 * pivot:.1f} vs {100 * noise:.1f}")
    return out


if __name__ == "__main__":
    sys.exit(run_tool(__doc__, ROWS, Path("runs/results-pivot"), BEGIN, END, run_row, table, checks))
