"""The one shape every reported number takes: a value beside its chance level.

Every metric of this package is a percentage, and a percentage means little without the score a
random ranking would get on the same data (that depends on how many candidates there are, which
varies per language and per test set). So every leaf of a metrics dict is
``{"value": float, "chance": float}``, and language-pair matrices are
``{"languages": [...], "value": [[...]], "chance": [[...]]}`` with ``None`` where a cell has no data.
The report writer and `metrics.json` rely on exactly these two shapes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def _plain(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def figure(value: float, chance: float) -> dict[str, float | None]:
    """A single figure and the value a random ranking would get, both in percent."""
    return {"value": _plain(value), "chance": _plain(chance)}


def pair_matrix(languages: Sequence[str], value: np.ndarray, chance: np.ndarray) -> dict[str, Any]:
    """A query-language x target-language matrix of figures (NaN cells, i.e. no data, become None)."""
    return {
        "languages": list(languages),
        "value": [[_plain(v) for v in row] for row in np.asarray(value, dtype=float)],
        "chance": [[_plain(c) for c in row] for row in np.asarray(chance, dtype=float)],
    }


def is_figure(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"value", "chance"}


def is_pair_matrix(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"languages", "value", "chance"}
