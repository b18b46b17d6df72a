"""Turkish captions: bare nouns after numerals, genitive + possessive + locative relations, vowel harmony."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {2: "iki", 3: "üç"}
SIZES = {"small": "küçük", "big": "büyük"}
COLOURS = {"red": "kırmızı", "green": "yeşil", "blue": "mavi", "yellow": "sarı",
           "white": "beyaz", "black": "siyah"}
# noun and its genitive (-nin after a vowel, -in/-ın after a consonant, by vowel harmony)
SHAPES = {"circle": ("daire", "dairenin"), "square": ("kare", "karenin"),
          "triangle": ("üçgen", "üçgenin"), "star": ("yıldız", "yıldızın")}
# place noun + 3rd person possessive + locative: "X-in sol-u-n-da" = "to the left of X"
RELATIONS = {"left_of": "solunda", "right_of": "sağında", "above": "üstünde", "below": "altında"}
COPULA = {"a": "dır", "e": "dir"}  # -DIr after the locative's back (-da) or front (-de) vowel


def noun_phrase(g: Group, genitive: bool = False) -> str:
    """No plural suffix after a numeral; one is "bir" between the adjectives and the noun."""
    noun = SHAPES[g.shape][1 if genitive else 0]
    adjectives = f"{SIZES[g.size]} {COLOURS[g.colour]}"
    if g.count == 1:
        return f"{adjectives} bir {noun}"
    return f"{NUMBERS[g.count]} {adjectives} {noun}"


def _location(meaning: Meaning) -> str:
    return f"{noun_phrase(meaning.obj, genitive=True)} {RELATIONS[meaning.relation]}"


def _sentence(text: str) -> str:
    first = {"i": "İ", "ı": "I"}.get(text[0], text[0].upper())  # Turkish dotted and dotless i
    return first + text[1:] + "."


class Turkish(Captioner):
    code = "tr"
    name = "Turkish"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s, place = noun_phrase(meaning.subject), _location(meaning)
        if template == 0:  # the relation becomes a modifier with -ki: "X-in solundaki iki daire"
            return f"{place}ki {s}"
        if template == 1:
            return _sentence(f"{s} {place}{COPULA[place[-1]]}")
        return _sentence(f"{place} {s} var")


CAPTIONER = Turkish()
