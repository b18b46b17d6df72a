"""Language codes: every sample carries a canonical BCP-47 tag that names a real language."""

from __future__ import annotations

import langcodes

# Tags that are valid BCP-47 but say no language was identified: useless for a multilingual model.
_NOT_A_LANGUAGE = {"und", "mul", "zxx", "mis"}


class UnknownLanguage(ValueError):
    pass


def canonical_language(code: str | None) -> str:
    """Canonical form of a language tag: "EN" -> "en", "eng" -> "en", "pt_BR" -> "pt-BR".

    Raises UnknownLanguage for anything that is not a registered language.
    """
    if not code or not isinstance(code, str) or not code.strip():
        raise UnknownLanguage("no language code")
    raw = code.strip()
    try:
        valid = langcodes.tag_is_valid(raw.replace("_", "-"))
    except Exception:
        valid = False
    if not valid:
        raise UnknownLanguage(f"{code!r} is not a valid BCP-47 language tag")
    tag = langcodes.standardize_tag(raw.replace("_", "-"))
    if langcodes.Language.get(tag).language in (None, *_NOT_A_LANGUAGE):
        raise UnknownLanguage(f"{code!r} names no particular language")
    return tag
