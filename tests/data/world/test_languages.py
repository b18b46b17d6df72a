"""Properties every language of the built-in benchmark must have (per-language golden sentences live
in test_language_<code>.py)."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import replace

import pytest

from dist_train.data.world.languages import LANGUAGES, N_TEMPLATES, get_captioner, scripts_disjoint
from dist_train.data.world.meaning import COLOURS, COUNTS, RELATIONS, SHAPES, SIZES, Meaning, all_meanings

SCRIPT_NAME_PREFIXES = {
    "Latn": ("LATIN",),
    "Cyrl": ("CYRILLIC",),
    "Grek": ("GREEK",),
    "Arab": ("ARABIC",),
    "Deva": ("DEVANAGARI",),
    "Hira": ("HIRAGANA", "KATAKANA-HIRAGANA"),
    "Kana": ("KATAKANA",),
    "Hani": ("CJK UNIFIED IDEOGRAPH", "IDEOGRAPHIC ITERATION MARK"),
    "Hang": ("HANGUL",),
}


def _sample_meanings(n: int, seed: int = 0) -> list[Meaning]:
    return random.Random(seed).sample(all_meanings(), n)


def _perturbations(m: Meaning):
    """Meanings that differ from `m` in exactly one attribute."""
    for role in ("subject", "obj"):
        g = getattr(m, role)
        for field, values in (("count", COUNTS), ("size", SIZES), ("colour", COLOURS), ("shape", SHAPES)):
            for v in values:
                if v != getattr(g, field):
                    g2 = replace(g, **{field: v})
                    other = m.obj if role == "subject" else m.subject
                    if g2 != other:
                        yield replace(m, **{role: g2})
    for r in RELATIONS:
        if r != m.relation:
            yield replace(m, relation=r)


def test_at_least_twelve_languages_and_four_non_latin_scripts():
    assert len(LANGUAGES) >= 12
    non_latin = [c for c in LANGUAGES if "Latn" not in get_captioner(c).scripts]
    assert len(non_latin) >= 4
    assert scripts_disjoint("en", "ru") and scripts_disjoint("ar", "ko")
    assert not scripts_disjoint("en", "de") and not scripts_disjoint("ja", "zh")


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_captioner_declares_itself(code):
    c = get_captioner(code)
    assert c.code == code and c.name and c.scripts and c.n_templates == N_TEMPLATES


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_captions_are_clean_text_in_the_declared_scripts(code):
    c = get_captioner(code)
    prefixes = tuple(p for s in c.scripts for p in SCRIPT_NAME_PREFIXES[s])
    for m in _sample_meanings(300):
        for t in range(N_TEMPLATES):
            text = c.caption(m, t)
            assert text == text.strip() and "  " not in text and text, (code, t, text)
            assert "{" not in text and "}" not in text and "_" not in text, (code, t, text)
            assert unicodedata.normalize("NFC", text) == text, (code, t, text)
            for ch in text:
                if unicodedata.category(ch)[0] in "LM":
                    assert unicodedata.name(ch, "").startswith(prefixes), (code, t, text, ch, unicodedata.name(ch, "?"))
                assert not ch.isdigit(), (code, t, text)


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_every_attribute_changes_the_caption(code):
    """A caption determines its meaning: changing any one attribute changes the text."""
    c = get_captioner(code)
    for m in _sample_meanings(150, seed=1):
        for t in range(N_TEMPLATES):
            text = c.caption(m, t)
            for m2 in _perturbations(m):
                assert c.caption(m2, t) != text, (code, t, m, m2, text)


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_captions_are_distinct_across_a_large_sample(code):
    c = get_captioner(code)
    meanings = _sample_meanings(4000, seed=2)
    for t in range(N_TEMPLATES):
        texts = {c.caption(m, t) for m in meanings}
        assert len(texts) == len(meanings), (code, t)


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_templates_differ_and_the_inverted_sentence_tells_the_same_fact(code):
    c = get_captioner(code)
    for m in _sample_meanings(50, seed=3):
        texts = [c.caption(m, t) for t in range(N_TEMPLATES)]
        assert len(set(texts)) == N_TEMPLATES, (code, texts)
        # template 2 is template 1 said from the other side
        assert c.caption(m, 2) == c.caption(m.inverted(), 1), (code, m)


@pytest.mark.parametrize("code", LANGUAGES, ids=[f"lang_{c}" for c in LANGUAGES])
def test_bad_template_is_a_clear_error(code):
    with pytest.raises(ValueError):
        get_captioner(code).caption(_sample_meanings(1)[0], N_TEMPLATES)
