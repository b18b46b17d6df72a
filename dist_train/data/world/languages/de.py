"""German captions: noun gender, case (accusative after "es gibt", dative after the relation), adjective declension."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {2: "zwei", 3: "drei"}
SIZES = {"small": "klein", "big": "groß"}
COLOURS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "white": "weiß", "black": "schwarz"}
# shape: (gender, singular, plural, dative plural); none of these nouns changes in the singular
SHAPES = {"circle": ("m", "Kreis", "Kreise", "Kreisen"), "square": ("n", "Quadrat", "Quadrate", "Quadraten"),
          "triangle": ("n", "Dreieck", "Dreiecke", "Dreiecken"), "star": ("m", "Stern", "Sterne", "Sternen")}
# every relation governs the dative here (location, not direction)
RELATIONS = {"left_of": "links von", "right_of": "rechts von", "above": "über", "below": "unter"}

# indefinite article "ein" by case and gender
ARTICLE = {"nom": {"m": "ein", "f": "eine", "n": "ein"},
           "acc": {"m": "einen", "f": "eine", "n": "ein"},
           "dat": {"m": "einem", "f": "einer", "n": "einem"}}
# adjective endings: mixed declension after "ein" (singular), strong declension after a number (plural)
MIXED_ENDINGS = {"nom": {"m": "er", "f": "e", "n": "es"},
                 "acc": {"m": "en", "f": "e", "n": "es"},
                 "dat": {"m": "en", "f": "en", "n": "en"}}
STRONG_PLURAL_ENDINGS = {"nom": "e", "acc": "e", "dat": "en"}


def noun_phrase(g: Group, case: str) -> str:
    """`g` in `case` ("nom", "acc" or "dat"): "einen kleinen roten Kreis", "zwei großen blauen Quadraten"."""
    gender, singular, plural, dative_plural = SHAPES[g.shape]
    if g.count == 1:
        ending = MIXED_ENDINGS[case][gender]
        return f"{ARTICLE[case][gender]} {SIZES[g.size]}{ending} {COLOURS[g.colour]}{ending} {singular}"
    ending = STRONG_PLURAL_ENDINGS[case]
    noun = dative_plural if case == "dat" else plural
    return f"{NUMBERS[g.count]} {SIZES[g.size]}{ending} {COLOURS[g.colour]}{ending} {noun}"


def _where(m: Meaning) -> str:
    return f"{RELATIONS[m.relation]} {noun_phrase(m.obj, 'dat')}"


def _be(g: Group) -> str:
    return "ist" if g.count == 1 else "sind"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class German(Captioner):
    code = "de"
    name = "German"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 0:
            return f"{noun_phrase(meaning.subject, 'nom')} {_where(meaning)}"
        if template in (1, 2):
            m = meaning if template == 1 else meaning.inverted()
            return _sentence(f"{noun_phrase(m.subject, 'nom')} {_be(m.subject)} {_where(m)}")
        return _sentence(f"es gibt {noun_phrase(meaning.subject, 'acc')} {_where(meaning)}")


CAPTIONER = German()
