"""What every caption translator offers: batched, length-sorted translation with one name.

Captions vary from three words to several sentences. Padding a batch to its longest member
wastes the decoder's work on the short ones, so inputs are sorted by length before they are cut
into batches and put back in input order afterwards. Backends only translate one batch.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class TranslatorError(ValueError):
    """A translation request that cannot be served as configured; the message says what to do."""


class Translator(abc.ABC):
    """Translates lists of texts between ISO 639-1 languages ("en", "de", ...).

    `name` goes into the provenance of every caption it translates, so it says which backend
    and which model produced it (e.g. "hf:opus-mt-en-de", "ctranslate2-int8:nllb-tiny").
    """

    name: str = "translator"

    def __init__(self, batch_size: int = 32):
        if int(batch_size) < 1:
            raise TranslatorError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @abc.abstractmethod
    def supports(self, source: str, target: str) -> bool:
        """Whether this translator can translate from `source` to `target`."""

    @abc.abstractmethod
    def _translate_batch(self, texts: list[str], source: str, target: str,
                         metas: list[dict] | None) -> list[str]:
        """Translate one batch (already length-sorted, at most `batch_size` texts)."""

    def check_pair(self, source: str, target: str) -> None:
        """Raise TranslatorError unless the pair is supported (subclasses may say more)."""
        if not self.supports(source, target):
            raise TranslatorError(f"{self.name} cannot translate {source}->{target}; choose a model for that pair")

    def translate(self, texts: Sequence[str], source: str, target: str,
                  metas: Sequence[dict] | None = None) -> list[str]:
        """The translations of `texts`, in input order. `metas`, one per text, is only read by
        translators that need per-sample context (the benchmark's reference translator)."""
        texts = list(texts)
        if metas is not None and len(metas) != len(texts):
            raise TranslatorError(f"got {len(texts)} texts but {len(metas)} metas; pass one meta per text")
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise TranslatorError(f"texts must be strings, got {type(bad).__name__}")
        self.check_pair(source, target)
        if not texts:
            return []
        # longest first: the first batch is the most expensive one, so memory trouble shows early
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        results: list[str | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch_metas = None if metas is None else [metas[i] for i in chunk]
            translated = self._translate_batch([texts[i] for i in chunk], source, target, batch_metas)
            if len(translated) != len(chunk):
                raise RuntimeError(f"{self.name} returned {len(translated)} translations for {len(chunk)} texts")
            for i, text in zip(chunk, translated):
                results[i] = text
        return results  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size})"
