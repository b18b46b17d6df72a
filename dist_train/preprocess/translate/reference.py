"""The perfect translator of the built-in benchmark, for pipelines that must run without models.

A benchmark caption is rendered from a meaning (its sample's `meta`), so its exact translation
is the same meaning rendered in the target language with the same construction. This lets the
whole translate-and-train path run and be checked end to end with known-correct output. It
refuses anything that is not a benchmark caption, so it cannot stand in for a model on real data.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import Translator, TranslatorError

REQUIRED_META = ("scene", "said", "template")  # what every benchmark sample's meta holds


class WorldReferenceTranslator(Translator):
    """Translates built-in benchmark captions by re-rendering them with `caption_in`.

    Each text must come with its sample's meta, and must be exactly what that meta renders to
    in the source language; otherwise the caption is not (or no longer) a benchmark caption.
    """

    name = "world-reference"

    def __init__(self, batch_size: int = 256):
        super().__init__(batch_size)

    def supports(self, source: str, target: str) -> bool:
        from dist_train.data.world.languages import LANGUAGES

        return source in LANGUAGES and target in LANGUAGES

    def check_pair(self, source: str, target: str) -> None:
        if not self.supports(source, target):
            from dist_train.data.world.languages import LANGUAGES

            raise TranslatorError(f"{self.name} cannot translate {source}->{target}: the built-in benchmark "
                                  f"has only {', '.join(LANGUAGES)}")

    def _translate_batch(self, texts, source, target, metas):
        from dist_train.data.world.dataset import caption_in

        if metas is None:
            raise TranslatorError(f"{self.name} needs each caption's sample meta (metas=...); it only "
                                  "translates captions of the built-in benchmark")
        translations = []
        for text, meta in zip(texts, metas):
            missing = [key for key in REQUIRED_META if not isinstance(meta, Mapping) or key not in meta]
            if missing:
                raise TranslatorError(
                    f"{self.name}: the meta of {text!r} has no {', '.join(missing)}; it only translates "
                    "captions of the built-in benchmark (use an hf or ctranslate2 translator for real data)")
            try:
                rendered = caption_in(dict(meta), source)
                translated = caption_in(dict(meta), target)
            except (KeyError, TypeError, ValueError) as err:
                raise TranslatorError(f"{self.name}: malformed benchmark meta for {text!r}: {err!r}") from err
            if rendered != text.strip():
                raise TranslatorError(
                    f"{self.name}: {text!r} is not what its meta renders to in {source} ({rendered!r}); "
                    "it only translates unmodified captions of the built-in benchmark")
            translations.append(translated)
        return translations
