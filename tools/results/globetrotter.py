"""Regenerate the Globetrotter table of docs/results.md: train every row with several seeds, evaluate, print.

Each row is `configs/globetrotter-results.yaml` plus a few overrides (the paper's baselines, its
single-loss ablations and its own forms of the method), trained with `dist-train train` (DeepSpeed
ZeRO-2, 2 local processes) once per seed and evaluated with `dist-train eval` on the test split. Every
cell is the mean and the standard deviation over the seeds. A seed whose evaluation exists is not
trained again, so an interrupted regeneration continues where it stopped.

    python tools/results/globetrotter.py                      # all rows, table on stdout
    python tools/results/globetrotter.py --rows globetrotter,text-only
    python tools/results/globetrotter.py --write docs/results.md   # also replace the table there

The supervised row trains on `shards/world-demo-parallel-train` (every training image captioned in all
14 languages; `configs/preprocess/parallel-train.yaml`), made first when it is missing. Every seed is also
evaluated on `test_hard` (pairs of scenes that differ in one thing only), packed once into
`shards/packed/world-demo-hard` and tokenised with each training dataset's vocabulary.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tables import run_tool  # tools/results/tables.py

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/globetrotter-results.yaml"
SHARDS = "shards/world-demo"
PARALLEL_SHARDS = "shards/world-demo-parallel-train"
PARALLEL_COMMAND = ["dist-train", "preprocess", "--in", "shards/packed/world-demo", "--out", PARALLEL_SHARDS,
                    "--config", "configs/preprocess/parallel-train.yaml"]
# The harder test: 250 pairs of unseen scenes that differ in one attribute or the relation only (split
# test_hard, 7 000 captions), packed once and tokenised with each training dataset's own vocabulary.
HARD_PACKED = "shards/packed/world-demo-hard"
HARD_PACK_COMMAND = ["dist-train", "pack", "world", "--preset", "demo", "--hard-test-pairs", "250", "--out", HARD_PACKED]
SEEDS = (0, 1, 2)
BEGIN, END = "<!-- globetrotter-table:begin -->", "<!-- globetrotter-table:end -->"

# name -> (what it is, overrides, seeds); the order of the paper's figure 5
ROWS = {
    "supervised": ("fully supervised: paired training captions (2 translations of each image per batch), "
                   "alpha = 1 for translations",
                   [f"data.shards={PARALLEL_SHARDS}", "data.captions_per_image=2", "objective.supervised=true",
                    "epochs=null", "max_steps=465"], SEEDS),
    "globetrotter": ("Globetrotter, all four losses", [], SEEDS),
    "no-cloze": ("without L_c", ["objective.cloze=0"], SEEDS),
    "no-transitive": ("without L_t", ["objective.transitive=0"], SEEDS),
    "no-visual": ("without L_v", ["objective.visual=0"], SEEDS),
    "no-cross-modal": ("without L_x", ["objective.cross_modal=0"], SEEDS),
    "text-only": ("text-only: no images, no image losses", ["objective.text_only=true"], SEEDS),
    "two-text-heads": ("all four losses, two text heads (the paper's: retrieval reads a head only L_t trains)",
                       ["model_config.text_heads=separate"], (0,)),
    "resnet18": ("all four losses, ResNet-18 (random init) instead of the spatial CNN",
                 ["model_config.image_arch=resnet18"], (0,)),
    "paper-forms": ("all four losses, the paper's heads, alpha and weights",
                    ["model_config.text_heads=separate", "model_config.image_heads=separate",
                     "objective.alpha_form=paper", "objective.alpha_image=visual", "objective.cross_modal=0.2"], (0,)),
}


def _out(runs: Path, name: str, seed: int) -> Path:
    return runs / name / f"seed{seed}"


def _shards(name: str) -> str:
    return next((o.split("=", 1)[1] for o in ROWS[name][1] if o.startswith("data.shards=")), SHARDS)


def hard_commands(name: str) -> tuple[str, list[list[str]]]:
    """The row's hard test set (its training data's vocabulary) and the commands that make it."""
    shards = _shards(name)
    hard = f"{shards}-hard"
    return hard, [HARD_PACK_COMMAND, ["dist-train", "preprocess", "--in", HARD_PACKED, "--out", hard,
                                      f"vocab.model={shards}/spm.model"]]


def commands(name: str, runs: Path, processes: int, seed: int | str) -> tuple[list[str], list[str], list[str]]:
    """Train, evaluate on the test split, evaluate on the hard test split."""
    out = runs / name / f"seed{seed}"
    train = ["dist-train", "train", "--config", CONFIG, "--nproc-per-node", str(processes), f"out_dir={out}",
             f"seed={seed}", *ROWS[name][1]]
    evaluate = ["dist-train", "eval", "--checkpoint", str(out / "checkpoints"), "--shards", _shards(name),
                "--out", str(out / "eval")]
    evaluate_hard = ["dist-train", "eval", "--checkpoint", str(out / "checkpoints"), "--shards", hard_commands(name)[0],
                     "--split", "test_hard", "--out", str(out / "eval-hard"), "--no-word-translation"]
    return train, evaluate, evaluate_hard


def _run(cmd: list[str]) -> None:
    print("$", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def _current(metrics: dict) -> bool:
    """Evaluated with every figure the table reads (older evaluations lack the pooled protocol)."""
    return "sentence_translation_pooled" in metrics and "word_translation" in metrics


def run_row(name: str, runs: Path, processes: int) -> list[dict]:
    """Train (when needed) and evaluate every seed of the row; the seeds' metrics."""
    root = runs if runs.is_absolute() else ROOT / runs
    if name == "supervised" and not (ROOT / PARALLEL_SHARDS / "summary.json").is_file():
        _run(PARALLEL_COMMAND)
    hard, make_hard = hard_commands(name)
    if not (ROOT / hard / "summary.json").is_file():
        if not (ROOT / HARD_PACKED / "summary.json").is_file():
            _run(make_hard[0])
        _run(make_hard[1])
    results = []
    for seed in ROWS[name][2]:
        metrics_path = _out(root, name, seed) / "eval" / "metrics.json"
        hard_path = _out(root, name, seed) / "eval-hard" / "metrics.json"
        train, evaluate, evaluate_hard = commands(name, runs, processes, seed)
        if not (_out(root, name, seed) / "checkpoints" / "latest").is_file():
            _run(train)
        if not metrics_path.is_file() or not _current(json.loads(metrics_path.read_text())):
            _run(evaluate)
        if not hard_path.is_file():
            _run(evaluate_hard)
        results.append({**json.loads(metrics_path.read_text()), "hard": json.loads(hard_path.read_text())})
    return results


COLUMNS = [  # (header, path into metrics.json to a {"value", "chance"} figure)
    ("sentence translation, other languages, all pairs (%)", ("sentence_translation", "retrieved_positives")),
    ("other languages, disjoint-script pairs (%)", ("sentence_translation", "disjoint_script_pairs")),
    ("hard distractors (test_hard), other languages, all pairs (%)", ("hard", "sentence_translation", "retrieved_positives")),
    ("hard distractors, disjoint-script pairs (%)", ("hard", "sentence_translation", "disjoint_script_pairs")),
    ("pooled with the own language, all pairs (%)", ("sentence_translation_pooled", "retrieved_positives")),
    ("pooled, disjoint-script pairs (%)", ("sentence_translation_pooled", "disjoint_script_pairs")),
    ("per-pair top-1, disjoint scripts (%)", ("bitext_retrieval", "disjoint_script_pairs")),
    ("own-language share of the top M-1 (%)", ("bitext_retrieval", "own_language_neighbours")),
    ("word translation R@10 after Procrustes (%)",
     ("word_translation", "after_alignment", "all_tokens_recall@10", "macro")),
    ("image-text mean recall", ("cross_modal", "average_mean_recall")),
]


def _figure(metrics: dict, path: tuple[str, ...]) -> dict | None:
    node = metrics
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node.get("value") is not None else None


def values(seeds: list[dict], path: tuple[str, ...]) -> np.ndarray:
    figures = [_figure(m, path) for m in seeds]
    return np.array([f["value"] for f in figures if f is not None], dtype=float)


def mean_spread(v: np.ndarray) -> str:
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.1f} (1 seed)"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def table(results: dict[str, list[dict]], runs: Path, processes: int) -> str:
    lines = ["| row | " + " | ".join(header for header, _ in COLUMNS) + " | command (per seed) |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    chances: list[str] = ["" for _ in COLUMNS]
    for name, seeds in results.items():
        cells = []
        for i, (_, path) in enumerate(COLUMNS):
            cells.append(mean_spread(values(seeds, path)))
            fig = next((f for f in (_figure(m, path) for m in seeds) if f), None)
            if fig and fig.get("chance") is not None and not chances[i]:
                chances[i] = f"{fig['chance']:.2f}"
        seed_list = " ".join(map(str, ROWS[name][2]))
        steps = " && ".join(shlex.join(c) for c in commands(name, runs, processes, "SEED"))
        command = f"for s in {seed_list}; do {steps}; done".replace("SEED", "$s")
        lines.append(f"| {ROWS[name][0]} | " + " | ".join(cells) + f" | `{command}` |")
    if results:
        lines.append("| chance | " + " | ".join(chances) + " | |")
    return "\n".join(lines)


def _compare(results: dict, a: str, b: str, path: tuple[str, ...]) -> tuple[float, float, bool]:
    """Means of rows a and b and whether they differ by more than the sum of their seed spreads."""
    va, vb = values(results[a], path), values(results[b], path)
    spread = (va.std(ddof=1) if len(va) > 1 else 0.0) + (vb.std(ddof=1) if len(vb) > 1 else 0.0)
    return float(va.mean()), float(vb.mean()), abs(va.mean() - vb.mean()) > spread


def checks(results: dict[str, list[dict]]) -> list[str]:
    """The outcomes the paper reports, stated as met or not against these numbers."""
    headline = ("sentence_translation", "retrieved_positives")
    disjoint = ("sentence_translation", "disjoint_script_pairs")
    out = []
    if {"globetrotter", "text-only"} <= results.keys():
        full, text = values(results["globetrotter"], disjoint).mean(), values(results["text-only"], disjoint).mean()
        ratio = full / max(text, 1e-9)
        out.append(f"Globetrotter / text-only on disjoint-script pairs (other languages): {full:.2f} / {text:.2f} = "
                   f"{ratio:.1f}x (target >= 10x): {'met' if ratio >= 10 else 'NOT met'}")
        word = ("word_translation", "after_alignment", "all_tokens_recall@10", "macro")
        w_full, w_text, clear = _compare(results, "globetrotter", "text-only", word)
        out.append(f"word translation R@10 above text-only: {'met' if w_full > w_text else 'NOT met'} "
                   f"({w_full:.1f} against {w_text:.1f}{'' if clear else ', within the seed spread'})")
    if {"globetrotter", "supervised"} <= results.keys():
        sup, full, clear = _compare(results, "supervised", "globetrotter", headline)
        out.append(f"supervised above Globetrotter: {'met' if sup > full else 'NOT met'} ({sup:.2f} against "
                   f"{full:.2f}{'' if clear else ', within the seed spread'})")
    ablations = {"no-visual": "L_v", "no-cross-modal": "L_x", "no-transitive": "L_t", "no-cloze": "L_c"}
    if "globetrotter" in results and ablations.keys() & results.keys():
        full = values(results["globetrotter"], headline)
        parts = []
        for name, loss in ablations.items():
            if name in results:
                _, without, clear = _compare(results, "globetrotter", name, headline)
                cost = full.mean() - without
                parts.append(f"removing {loss} costs {cost:+.2f}{'' if clear else ' (within the seed spread)'}")
        out.append("figure 5 (removing L_v or L_x costs most, L_t clearly, L_c little or nothing): " + "; ".join(parts))
    return out


def main() -> int:
    return run_tool(__doc__, ROWS, Path("runs/results/globetrotter"), BEGIN, END, run_row, table, checks)


if __name__ == "__main__":
    sys.exit(main())
