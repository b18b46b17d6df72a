"""Regenerate the SMALR table of docs/results.md: train every row, read its evaluation, print the table.

Each row is `configs/smalr-demo.yaml` plus a few overrides (the paper's comparison configurations),
trained with `dist-train train` (DeepSpeed ZeRO-2, 2 local processes) on the ten-language benchmark
(see the header of that config for how to build it). The objective evaluates at the end of training
(mean recall per language on the test split, CLC-A and CLC-C from the translated queries) and writes
`RUN/eval/smalr_stepNNNNNNNN.json`; a row whose file exists is not trained again.

    python tools/results/smalr.py                            # all rows, table on stdout
    python tools/results/smalr.py --rows smalr,hem
    python tools/results/smalr.py --write docs/results.md    # also replace the table there
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
CONFIG = "configs/smalr-demo.yaml"
LANGUAGES = ["en", "de", "fr", "es", "it", "ru", "ar", "ja", "ko", "zh"]
BEGIN, END = "<!-- smalr-table:begin -->", "<!-- smalr-table:end -->"
NO_MCLM = ["objective.mclm=0", "objective.masked_triplet=0", "model_config.mclm_variants=[]"]
FULL = [*NO_MCLM, "objective.hem.mode=full"]

# name -> (what it is, overrides)
ROWS = {
    "smalr": ("SMALR", []),
    "hem": ("HEM, no MCLM", NO_MCLM),
    "agnostic": ("language-agnostic vocabulary only", [*NO_MCLM, "objective.hem.mode=agnostic"]),
    "full": ("full vocabulary per language (300-d)", [*FULL, "objective.hem.word_dim=300"]),
    "full-min50": ("full, frequency threshold 50", [*FULL, "objective.hem.word_dim=300", "objective.hem.min_count=50"]),
    "full-pca50": ("full, PCA 300 -> 50", [*FULL, "objective.hem.word_dim=50"]),
}


def train_command(name: str, runs: Path, processes: int) -> list[str]:
    return ["dist-train", "train", "--config", CONFIG, "--nproc-per-node", str(processes), f"out_dir={runs / name}",
            *ROWS[name][1]]


def run_row(name: str, runs: Path, processes: int) -> dict:
    run = (runs if runs.is_absolute() else ROOT / runs) / name
    if not sorted((run / "eval").glob("smalr_step*.json")):
        cmd = train_command(name, runs, processes)
        print("$", shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return json.loads(sorted((run / "eval").glob("smalr_step*.json"))[-1].read_text())


def _row(label: str, by_language: dict[str, float], average: str, parameters: str) -> str:
    cells = " | ".join(f"{by_language[lang]:.1f}" if lang in by_language else "n/a" for lang in LANGUAGES)
    return f"| {label} | {cells} | {average} | {parameters} |"


def _clc_c_note(m: dict) -> str:
    if m.get("clc_c_collapsed"):
        return " (collapsed)"
    if "clc_c_selected_iteration" in m:
        return f" (iterate {m['clc_c_selected_iteration']} of 30)"
    return ""


def table(results: dict[str, dict], runs: Path, processes: int) -> str:
    lines = ["| model | " + " | ".join(LANGUAGES) + " | A | embedding / total parameters |",
             "|---" * (len(LANGUAGES) + 3) + "|"]
    commands = []
    for name, m in results.items():
        p = m.get("parameters", {})
        params = f"{p.get('embedding_total', 0):,} / {p.get('total', 0):,}".replace(",", " ")
        lines.append(_row(ROWS[name][0], m["mean_recall"], f"{m['average_mean_recall']:.2f}", params))
        if name == "smalr":
            for method, label, extra in (("clc_a", "SMALR-CLC-A (same run)", "same"),
                                         ("clc_c", "SMALR-CLC-C (same run)", "same + 352")):
                if f"average_mean_recall_{method}" in m:
                    note = _clc_c_note(m) if method == "clc_c" else ""
                    lines.append(_row(label, m[f"mean_recall_{method}"],
                                      f"{m[f'average_mean_recall_{method}']:.2f}{note}", extra))
        commands.append(f"- {ROWS[name][0]}: `{shlex.join(train_command(name, runs, processes))}`")
    if results:
        chance = next(iter(results.values()))["average_mean_recall_chance"]
        lines.append("| chance | " + " | ".join("" for _ in LANGUAGES) + f" | {chance:.2f} | |")
    return "\n".join(lines) + "\n\nCommands:\n\n" + "\n".join(commands)


def checks(results: dict[str, dict]) -> list[str]:
    """The issue's targets, stated as met or not against these numbers."""
    out = []
    if {"hem", "full"} <= results.keys():
        hem, full = results["hem"], results["full"]
        ratio = full["parameters"]["embedding_total"] / max(hem["parameters"]["embedding_total"], 1)
        out.append(f"HEM: {ratio:.1f}x fewer embedding parameters than the full vocabulary per language, "
                   f"A {hem['average_mean_recall']:.2f} against {full['average_mean_recall']:.2f}")
    if "smalr" in results and "average_mean_recall_clc_a" in results["smalr"]:
        m = results["smalr"]
        verdict = "met" if m["average_mean_recall_clc_a"] >= m["average_mean_recall"] else "NOT met"
        out.append(f"CLC-A at or above SMALR: {verdict} ({m['average_mean_recall_clc_a']:.2f} against "
                   f"{m['average_mean_recall']:.2f})")
    return out


def main() -> int:
    return run_tool(__doc__, ROWS, Path("runs/results/smalr"), BEGIN, END, run_row, table, checks)


if __name__ == "__main__":
    sys.exit(main())
