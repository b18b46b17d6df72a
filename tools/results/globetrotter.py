"""Regenerate the Globetrotter table of docs/results.md: train every row, evaluate it, print the table.

Each row is `configs/globetrotter-results.yaml` plus a few overrides (the paper's baselines and
single-loss ablations), trained with `dist-train train` (DeepSpeed ZeRO-2, 2 local processes) and
evaluated with `dist-train eval` on the test split. A row whose evaluation exists is not trained
again, so an interrupted regeneration continues where it stopped.

    python tools/results/globetrotter.py                      # all rows, table on stdout
    python tools/results/globetrotter.py --rows globetrotter,text-only
    python tools/results/globetrotter.py --write docs/results.md   # also replace the table there
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tables import run_tool  # tools/results/tables.py

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/globetrotter-results.yaml"
SHARDS = "shards/world-demo"
BEGIN, END = "<!-- globetrotter-table:begin -->", "<!-- globetrotter-table:end -->"

# name -> (what it is, overrides); the order of the paper's figure 5
ROWS = {
    "supervised": ("fully supervised: alpha = 1 for captions that translate each other", ["objective.supervised=true"]),
    "globetrotter": ("Globetrotter, all four losses (paper forms)", []),
    "globetrotter-code": ("Globetrotter, the published code's L_t alpha and normalisation",
                          ["objective.alpha_form=code"]),
    "no-cloze": ("without L_c", ["objective.cloze=0"]),
    "no-transitive": ("without L_t", ["objective.transitive=0"]),
    "no-visual": ("without L_v", ["objective.visual=0"]),
    "no-cross-modal": ("without L_x", ["objective.cross_modal=0"]),
    "text-only": ("text-only: no images, no image losses", ["objective.text_only=true"]),
    "globetrotter-code-15ep": ("Globetrotter (code L_t), 15 epochs", ["objective.alpha_form=code", "epochs=15"]),
    "no-cloze-15ep": ("without L_c, 15 epochs", ["objective.cloze=0", "epochs=15"]),
    "text-only-15ep": ("text-only, 15 epochs", ["objective.text_only=true", "epochs=15"]),
}


def commands(name: str, runs: Path, processes: int) -> tuple[list[str], list[str]]:
    out = runs / name
    train = ["dist-train", "train", "--config", CONFIG, "--nproc-per-node", str(processes), f"out_dir={out}",
             *ROWS[name][1]]
    evaluate = ["dist-train", "eval", "--checkpoint", str(out / "checkpoints"), "--shards", SHARDS,
                "--out", str(out / "eval"), "--no-word-translation"]
    return train, evaluate


def run_row(name: str, runs: Path, processes: int) -> dict:
    metrics_path = (runs if runs.is_absolute() else ROOT / runs) / name / "eval" / "metrics.json"
    todo = []
    if not metrics_path.is_file():
        todo = list(commands(name, runs, processes))
    elif "bitext_retrieval" not in json.loads(metrics_path.read_text()):  # evaluated before that metric existed
        todo = [commands(name, runs, processes)[1]]
    if todo:
        for cmd in todo:
            print("$", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            exe = [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]
            subprocess.run(exe, cwd=ROOT, check=True)
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return json.loads(metrics_path.read_text())


COLUMNS = [  # (header, path into metrics.json to a {"value", "chance"} figure)
    ("sentence translation, all pairs (%)", ("sentence_translation", "retrieved_positives")),
    ("disjoint-script pairs (%)", ("sentence_translation", "disjoint_script_pairs")),
    ("per-pair top-1, all pairs (%)", ("bitext_retrieval", "accuracy")),
    ("per-pair top-1, disjoint scripts (%)", ("bitext_retrieval", "disjoint_script_pairs")),
    ("own-language share of the top M-1 (%)", ("bitext_retrieval", "own_language_neighbours")),
    ("image-text mean recall", ("cross_modal", "average_mean_recall")),
]


def _figure(metrics: dict, path: tuple[str, ...]) -> dict | None:
    node = metrics
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node.get("value") is not None else None


def table(results: dict[str, dict], runs: Path, processes: int) -> str:
    lines = ["| row | " + " | ".join(header for header, _ in COLUMNS) + " | command |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    chances: list[str] = ["" for _ in COLUMNS]
    for name, m in results.items():
        cells = []
        for i, (_, path) in enumerate(COLUMNS):
            fig = _figure(m, path)
            cells.append(f"{fig['value']:.2f}" if fig else "n/a")
            if fig and fig.get("chance") is not None:
                chances[i] = f"{fig['chance']:.2f}"
        train, evaluate = commands(name, runs, processes)
        lines.append(f"| {ROWS[name][0]} | " + " | ".join(cells) + f" | `{shlex.join(train)} && {shlex.join(evaluate)}` |")
    if results:
        lines.append("| chance | " + " | ".join(chances) + " | |")
    return "\n".join(lines)


def checks(results: dict[str, dict]) -> list[str]:
    """The outcomes the paper reports, stated as pass/fail against these numbers."""
    def disjoint(name: str) -> float:
        return results[name]["sentence_translation"]["disjoint_script_pairs"]["value"]

    def overall(name: str) -> float:
        return results[name]["sentence_translation"]["retrieved_positives"]["value"]

    out = []
    if {"globetrotter", "text-only"} <= results.keys():
        ratio = disjoint("globetrotter") / max(disjoint("text-only"), 1e-9)
        out.append(f"Globetrotter / text-only on disjoint-script pairs: {ratio:.2f}x (target >= 3x): "
                   f"{'met' if ratio >= 3 else 'NOT met'}")
        per_pair = [_figure(results[n], ("bitext_retrieval", "disjoint_script_pairs")) for n in ("globetrotter", "text-only")]
        if all(per_pair):
            out.append(f"the same on per-pair top-1 (languages not pooled): "
                       f"{per_pair[0]['value'] / max(per_pair[1]['value'], 1e-9):.2f}x")
    if {"no-cloze-15ep", "text-only-15ep"} <= results.keys():
        out.append(f"15 epochs, Globetrotter without L_c against text-only on disjoint-script pairs: "
                   f"{disjoint('no-cloze-15ep'):.2f} against {disjoint('text-only-15ep'):.2f} (chance "
                   f"{results['text-only-15ep']['sentence_translation']['disjoint_script_pairs']['chance']:.2f})")
    if "globetrotter" in results:
        chance = results["globetrotter"]["sentence_translation"]["retrieved_positives"]["chance"]
        out.append(f"Globetrotter / chance, all pairs: {overall('globetrotter') / chance:.2f}x")
    if {"globetrotter", "supervised"} <= results.keys():
        out.append(f"supervised above Globetrotter: {'met' if overall('supervised') > overall('globetrotter') else 'NOT met'}"
                   f" ({overall('supervised'):.2f} vs {overall('globetrotter'):.2f})")
    ablations = [n for n in ("globetrotter", "no-cloze", "no-transitive", "no-visual", "no-cross-modal") if n in results]
    if len(ablations) > 2:
        values = [overall(n) for n in ablations]
        ordered = all(a >= b for a, b in zip(values[:3], values[1:3])) and min(values[:3]) >= max(values[3:], default=0)
        out.append("ablation order of figure 5 (full >= -L_c >= -L_t >= {-L_v, -L_x}): "
                   f"{'met' if ordered else 'NOT met'} ({', '.join(f'{n} {v:.2f}' for n, v in zip(ablations, values))})")
    return out


def main() -> int:
    return run_tool(__doc__, ROWS, Path("runs/results/globetrotter"), BEGIN, END, run_row, table, checks)


if __name__ == "__main__":
    sys.exit(main())
