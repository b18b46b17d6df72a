"""Hindi captions: SOV order, direct/oblique case and number of nouns and adjectives, postpositions after के."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {1: "एक", 2: "दो", 3: "तीन"}
# all four shape nouns are masculine; तारा inflects like an -ā noun (तारे, तारों), the others only add -ों
SHAPES = {"circle": "वृत्त", "square": "वर्ग", "triangle": "त्रिभुज", "star": "तारा"}
# adjectives in -ā inflect (छोटा → छोटे), लाल and सफ़ेद do not
SIZES = {"small": "छोटा", "big": "बड़ा"}
COLOURS = {"red": "लाल", "green": "हरा", "blue": "नीला", "yellow": "पीला", "white": "सफ़ेद", "black": "काला"}
# compound postpositions taking the object in the oblique case
RELATIONS = {"left_of": "के बाईं ओर", "right_of": "के दाईं ओर", "above": "के ऊपर", "below": "के नीचे"}


def _adjective(lemma: str, plural: bool, oblique: bool) -> str:
    """Masculine agreement: -ā in the direct singular, -e everywhere else."""
    if lemma.endswith("ा") and (plural or oblique):
        return lemma[:-1] + "े"
    return lemma


def _noun(lemma: str, plural: bool, oblique: bool) -> str:
    stem = lemma[:-1] if lemma.endswith("ा") else lemma
    if plural and oblique:
        return stem + "ों"  # वृत्तों, तारों
    if lemma.endswith("ा") and (plural or oblique):
        return stem + "े"  # तारे
    return lemma


def noun_phrase(g: Group, oblique: bool = False) -> str:
    plural = g.count > 1
    words = [_adjective(SIZES[g.size], plural, oblique), _adjective(COLOURS[g.colour], plural, oblique),
             _noun(SHAPES[g.shape], plural, oblique)]
    return " ".join([NUMBERS[g.count], *words])


def _be(g: Group) -> str:
    return "है" if g.count == 1 else "हैं"


class Hindi(Captioner):
    code = "hi"
    name = "Hindi"
    scripts = frozenset({"Deva"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            return self.caption(meaning.inverted(), 1)
        s = meaning.subject
        place = f"{noun_phrase(meaning.obj, oblique=True)} {RELATIONS[meaning.relation]}"
        if template == 0:  # the place comes first, as a participle phrase: "... के बाईं ओर स्थित दो वृत्त"
            return f"{place} स्थित {noun_phrase(s)}"
        if template == 1:
            return f"{noun_phrase(s)} {place} {_be(s)}।"
        return f"{place} {noun_phrase(s)} {_be(s)}।"  # existential: the place first ("मेज़ पर एक किताब है")


CAPTIONER = Hindi()
