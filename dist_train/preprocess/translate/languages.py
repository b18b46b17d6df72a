"""ISO 639-1 codes, as the rest of dist_train uses them, to the codes translation models expect.

NLLB-200 names languages by FLORES-200 codes (language + script, e.g. "rus_Cyrl"); M2M100 uses
the ISO codes themselves. Users can override or extend either through `language_codes`, e.g.
`{"zh": "zho_Hant"}` for traditional characters or `{"no": "nob_Latn"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import TranslatorError

FLORES_CODES: Mapping[str, str] = MappingProxyType({
    # the built-in benchmark's languages
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "tr": "tur_Latn", "ru": "rus_Cyrl", "el": "ell_Grek", "ar": "arb_Arab",
    "hi": "hin_Deva", "ja": "jpn_Jpan", "ko": "kor_Hang", "zh": "zho_Hans",
    # other common ones
    "bg": "bul_Cyrl", "bn": "ben_Beng", "ca": "cat_Latn", "cs": "ces_Latn", "da": "dan_Latn",
    "fa": "pes_Arab", "fi": "fin_Latn", "he": "heb_Hebr", "hu": "hun_Latn", "id": "ind_Latn",
    "nl": "nld_Latn", "pl": "pol_Latn", "ro": "ron_Latn", "sk": "slk_Latn", "sv": "swe_Latn",
    "sw": "swh_Latn", "th": "tha_Thai", "uk": "ukr_Cyrl", "ur": "urd_Arab", "vi": "vie_Latn",
})


def flores_code(language: str, overrides: Mapping[str, str] | None = None) -> str:
    """The FLORES-200 code NLLB uses for an ISO 639-1 `language`."""
    if overrides and language in overrides:
        return overrides[language]
    try:
        return FLORES_CODES[language]
    except KeyError:
        raise TranslatorError(
            f"no NLLB (FLORES-200) code known for language {language!r}; pass language_codes="
            f"{{{language!r}: '<code>_<Script>'}} (e.g. 'est_Latn')") from None


def m2m100_code(language: str, overrides: Mapping[str, str] | None = None) -> str:
    """The code M2M100 uses for an ISO 639-1 `language` (the same code unless overridden)."""
    return overrides.get(language, language) if overrides else language
