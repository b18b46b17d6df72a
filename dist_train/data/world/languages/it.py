"""Italian captions: noun gender, size adjective before and colour after the noun, agreement, "c'è/ci sono"."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

# the article always stands before "piccolo"/"grande", so "uno" and "un'" are never needed
ARTICLES = {"m": "un", "f": "una"}
NUMBERS = {2: "due", 3: "tre"}
# adjective: (masculine singular, feminine singular, masculine plural, feminine plural)
SIZES = {"small": ("piccolo", "piccola", "piccoli", "piccole"), "big": ("grande", "grande", "grandi", "grandi")}
COLOURS = {"red": ("rosso", "rossa", "rossi", "rosse"), "green": ("verde", "verde", "verdi", "verdi"),
           "blue": ("blu", "blu", "blu", "blu"), "yellow": ("giallo", "gialla", "gialli", "gialle"),
           "white": ("bianco", "bianca", "bianchi", "bianche"), "black": ("nero", "nera", "neri", "nere")}
# shape: (gender, singular, plural)
SHAPES = {"circle": ("m", "cerchio", "cerchi"), "square": ("m", "quadrato", "quadrati"),
          "triangle": ("m", "triangolo", "triangoli"), "star": ("f", "stella", "stelle")}
# "di" does not contract with "un"/"una" or a number; "sopra"/"sotto" take the noun phrase directly
RELATIONS = {"left_of": "a sinistra di", "right_of": "a destra di", "above": "sopra", "below": "sotto"}


def noun_phrase(g: Group) -> str:
    """`g` as in "due piccoli cerchi rossi", "un grande quadrato blu", "una piccola stella bianca"."""
    gender, singular, plural = SHAPES[g.shape]
    form = (gender == "f") + 2 * (g.count > 1)  # index into an adjective's four forms
    head = f"{SIZES[g.size][form]} {singular if g.count == 1 else plural} {COLOURS[g.colour][form]}"
    determiner = ARTICLES[gender] if g.count == 1 else NUMBERS[g.count]
    return f"{determiner} {head}"


def _where(m: Meaning) -> str:
    return f"{RELATIONS[m.relation]} {noun_phrase(m.obj)}"


def _be(g: Group) -> str:
    return "è" if g.count == 1 else "sono"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class Italian(Captioner):
    code = "it"
    name = "Italian"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 0:
            return f"{noun_phrase(meaning.subject)} {_where(meaning)}"
        if template in (1, 2):
            m = meaning if template == 1 else meaning.inverted()
            return _sentence(f"{noun_phrase(m.subject)} {_be(m.subject)} {_where(m)}")
        there_is = "c'è" if meaning.subject.count == 1 else "ci sono"
        return _sentence(f"{there_is} {noun_phrase(meaning.subject)} {_where(meaning)}")


CAPTIONER = Italian()
