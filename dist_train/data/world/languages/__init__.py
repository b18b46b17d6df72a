"""Captioners of the built-in benchmark, one module per language (`<code>.py` exporting `CAPTIONER`)."""

from __future__ import annotations

import importlib
from functools import lru_cache

from .base import N_TEMPLATES, Captioner

# Seven languages in Latin script and seven in six other scripts, none of which shares
# vocabulary with another (ja and zh share Han characters, so they do not count as disjoint).
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "tr", "ru", "el", "ar", "hi", "ja", "ko", "zh")


@lru_cache(maxsize=None)
def get_captioner(code: str) -> Captioner:
    if code not in LANGUAGES:
        raise KeyError(f"the built-in benchmark has no language {code!r}; it has {', '.join(LANGUAGES)}")
    module = importlib.import_module(f"{__name__}.{code}")
    return module.CAPTIONER


def scripts_disjoint(a: str, b: str) -> bool:
    """True when captions in languages `a` and `b` share no script (and so no written word)."""
    return not (get_captioner(a).scripts & get_captioner(b).scripts)


__all__ = ["LANGUAGES", "N_TEMPLATES", "Captioner", "get_captioner", "scripts_disjoint"]
