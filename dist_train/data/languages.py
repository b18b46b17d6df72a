"""Language codes: every sample carries a canonical BCP-47 tag that names a real language.

The tag says which language a caption is in and nothing else: macrolanguage members are folded
into the macrolanguage (`cmn` -> `zh`, `arb` -> `ar`), and extensions (`-u-ca-gregory`,
`-t-en`) and private-use subtags after a language (`-x-foo`) are dropped, because a caption's
calendar or transliteration source does not change its language and two captions in one
language must carry one tag. A tag that is only private use (`x-foo`, `qaa`..`qtz`) names no
language anyone else can read, so it is refused.
"""

from __future__ import annotations

import re


# Tags that are valid BCP-47 but say no language was identified: useless for a multilingual model.
_NOT_A_LANGUAGE = {"und", "mul", "zxx", "mis"}
_PRIVATE_USE = re.compile(r"^(x|q[a-t][a-z])$")  # ISO 639's reserved range qaa..qtz, and "x-..." tags


class UnknownLanguage(ValueError):
    pass


def canonical_language(code: str | None) -> str:
    """Canonical form of a language tag: "EN" -> "en", "eng" -> "en", "pt_BR" -> "pt-BR", "cmn" -> "zh".

    Raises UnknownLanguage for anything that is not a registered language.
    """
    import langcodes  # here: its tables take a while to load, and --help needs none of them

    if code is not None and not isinstance(code, str):
        raise UnknownLanguage(f"the language is of type {type(code).__name__} ({code!r:.40}), not a language tag")
    if not code or not code.strip():
        raise UnknownLanguage("no language code")
    raw = code.strip().replace("_", "-")
    try:
        valid = langcodes.tag_is_valid(raw)
    except Exception:
        valid = False
    if not valid:
        raise UnknownLanguage(f"{code!r} is not a valid BCP-47 language tag")
    if _PRIVATE_USE.match(raw.split("-")[0].lower()):
        raise UnknownLanguage(f"{code!r} is a private-use tag: it names no registered language")
    lang = langcodes.Language.get(langcodes.standardize_tag(raw, macro=True))
    if lang.language in (None, *_NOT_A_LANGUAGE):
        raise UnknownLanguage(f"{code!r} names no particular language")
    return langcodes.Language.make(language=lang.language, script=lang.script, territory=lang.territory,
                                   variants=lang.variants).to_tag()
