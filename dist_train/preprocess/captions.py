"""Caption normalisation: the one place where caption text is made canonical."""

from __future__ import annotations

import unicodedata


def normalize_caption(text: str) -> str:
    """Unicode NFC, every run of (Unicode) whitespace as one space, no leading or trailing space.

    NFC rather than NFKC: compatibility folding would change full-width forms and ligatures that
    are part of how Japanese and Chinese text is written.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())
