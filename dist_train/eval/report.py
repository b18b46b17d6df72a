"""Human-readable output: the language-pair heatmap and a Markdown report of a metrics dict.

The report walks the metrics dict (see `figures`): every ``{"value", "chance"}`` leaf becomes a
table row with its chance level beside it, every language-pair matrix a table whose cells read
``value (chance)``, and plain numbers or lists are listed as facts. Nothing is dropped, so the
report says everything `metrics.json` says. A node with a ``"skipped"`` entry (a figure that could
not be computed on the data) becomes one line, "not computed: <reason>", instead of empty numbers.

matplotlib is imported only when a heatmap is drawn (Agg backend, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .figures import is_figure, is_pair_matrix


def save_pair_heatmap(matrix: Any, languages: Sequence[str], path: str | Path, title: str = "",
                      colorbar_label: str = "% of positives retrieved", chance: float | None = None,
                      query_axis: str = "Query language", target_axis: str = "Target language",
                      value_range: tuple[float, float] | None = None) -> Path:
    """Draw a query-language x target-language matrix as a PNG (NaN cells blank); returns the path. The
    colour scale runs from 0 to the best pair (`heatmap_range`), with chance marked on the colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array([[np.nan if v is None else v for v in row] for row in np.asarray(matrix, dtype=object)],
                      dtype=float)
    value_range = value_range or heatmap_range(values, chance)
    n = len(languages)
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=value_range[0], vmax=value_range[1])
        ax.set_xticks(range(n), labels=languages, rotation=90)
        ax.set_yticks(range(n), labels=languages)
        ax.set_xlabel(target_axis)
        ax.set_ylabel(query_axis)
        if title or chance is not None:
            ax.set_title(title + (f" (chance {chance:.2f})" if chance is not None else ""))
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if not np.isnan(values[i, j]):
                        ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if values[i, j] < np.mean(value_range) else "black")
        bar = fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
        if chance is not None and value_range[0] <= chance <= value_range[1]:
            bar.ax.axhline(chance, color="red", linewidth=1.5)
            bar.ax.text(1.6, chance, "chance", color="red", va="center", fontsize=7, transform=bar.ax.get_yaxis_transform())
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def heatmap_range(values: np.ndarray, chance: float | None = None) -> tuple[float, float]:
    """0 to the best cell (or chance, if higher), rounded up: a fixed 0-100 scale makes a matrix of a few
    percent one dark plate, where neither chance nor the best pairs can be told apart."""
    finite = values[np.isfinite(values)]
    top = max(float(finite.max()) if finite.size else 0.0, chance or 0.0)
    if top <= 0:
        return 0.0, 1.0
    step = 10 ** np.floor(np.log10(top))
    return 0.0, float(min(100.0, np.ceil(top / step * 2) / 2 * step))


def _number(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.2f}"


def _title(key: str) -> str:
    return key.replace("_", " ")


def _figure_rows(node: Mapping[str, Any], trail: list[str]) -> list[tuple[str, Any]]:
    """Depth-first list of (label, node) for every figure, matrix and fact under `node`."""
    out: list[tuple[str, Any]] = []
    for key, child in node.items():
        label = " / ".join([*trail, _title(str(key))])
        if isinstance(child, Mapping) and "skipped" in child:
            out.append((label, f"not computed: {child['skipped']}"))
        elif is_figure(child) or is_pair_matrix(child):
            out.append((label, child))
        elif isinstance(child, Mapping):
            out.extend(_figure_rows(child, [*trail, _title(str(key))]))
        else:
            out.append((label, child))
    return out


def _matrix_table(matrix: Mapping[str, Any]) -> list[str]:
    languages = matrix["languages"]
    lines = ["| query \\ target | " + " | ".join(languages) + " |", "|---" * (len(languages) + 1) + "|"]
    for lang, values, chances in zip(languages, matrix["value"], matrix["chance"]):
        cells = ["–" if v is None else f"{_number(v)} ({_number(c)})" for v, c in zip(values, chances)]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(metrics: Mapping[str, Any], title: str = "Evaluation report",
                    images: Mapping[str, str] | None = None) -> str:
    """The report as Markdown: one section per top-level key, every figure beside its chance.

    images: optional section key -> image path (relative to the report) shown under that section.
    """
    lines = [f"# {title}", "", "All figures are percentages; *chance* is the expected value of the same "
             "figure for a random ranking of the same candidates.", ""]
    for section, content in metrics.items():
        lines += [f"## {_title(str(section))}", ""]
        if not isinstance(content, Mapping) or is_figure(content) or is_pair_matrix(content):
            content = {str(section): content}
        rows = _figure_rows(content, [])
        figures = [(label, node) for label, node in rows if is_figure(node)]
        facts = [(label, node) for label, node in rows if not is_figure(node) and not is_pair_matrix(node)]
        matrices = [(label, node) for label, node in rows if is_pair_matrix(node)]
        if figures:
            lines += ["| figure | value | chance |", "|---|---:|---:|"]
            lines += [f"| {label} | {_number(node['value'])} | {_number(node['chance'])} |" for label, node in figures]
            lines.append("")
        for label, node in facts:
            lines.append(f"- {label}: {node if not isinstance(node, (float, np.floating)) else _number(node)}")
        if facts:
            lines.append("")
        for label, node in matrices:
            lines += [f"### {label}", "", "Cells: value (chance).", ""] + _matrix_table(node) + [""]
        if images and section in images:
            lines += [f"![{_title(str(section))}]({images[section]})", ""]
    return "\n".join(lines)


def write_markdown_report(metrics: Mapping[str, Any], path: str | Path, title: str = "Evaluation report",
                          images: Mapping[str, str] | None = None) -> Path:
    """Write `markdown_report(metrics, ...)` to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(metrics, title, images), encoding="utf-8")
    return path
