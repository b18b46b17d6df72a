"""French captions: noun gender, size adjective before and colour after the noun, agreement, elision "d'un"."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

ARTICLES = {"m": "un", "f": "une"}
NUMBERS = {2: "deux", 3: "trois"}
# adjective: (masculine singular, feminine singular, masculine plural, feminine plural)
SIZES = {"small": ("petit", "petite", "petits", "petites"), "big": ("grand", "grande", "grands", "grandes")}
COLOURS = {"red": ("rouge", "rouge", "rouges", "rouges"), "green": ("vert", "verte", "verts", "vertes"),
           "blue": ("bleu", "bleue", "bleus", "bleues"), "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
           "white": ("blanc", "blanche", "blancs", "blanches"), "black": ("noir", "noire", "noirs", "noires")}
# shape: (gender, singular, plural)
SHAPES = {"circle": ("m", "cercle", "cercles"), "square": ("m", "carré", "carrés"),
          "triangle": ("m", "triangle", "triangles"), "star": ("f", "étoile", "étoiles")}
# every relation ends in "de", which elides before a vowel ("à gauche d'un")
RELATIONS = {"left_of": "à gauche de", "right_of": "à droite de", "above": "au-dessus de", "below": "au-dessous de"}


def noun_phrase(g: Group) -> str:
    """`g` as in "deux petits cercles rouges", "un grand carré bleu", "une petite étoile blanche"."""
    gender, singular, plural = SHAPES[g.shape]
    form = (gender == "f") + 2 * (g.count > 1)  # index into an adjective's four forms
    head = f"{SIZES[g.size][form]} {singular if g.count == 1 else plural} {COLOURS[g.colour][form]}"
    determiner = ARTICLES[gender] if g.count == 1 else NUMBERS[g.count]
    return f"{determiner} {head}"


def _where(m: Meaning) -> str:
    rel, obj = RELATIONS[m.relation], noun_phrase(m.obj)
    if obj[0] in "aeiouhéè":
        return f"{rel[:-2]}d'{obj}"
    return f"{rel} {obj}"


def _be(g: Group) -> str:
    return "est" if g.count == 1 else "sont"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class French(Captioner):
    code = "fr"
    name = "French"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 0:
            return f"{noun_phrase(meaning.subject)} {_where(meaning)}"
        if template in (1, 2):
            m = meaning if template == 1 else meaning.inverted()
            return _sentence(f"{noun_phrase(m.subject)} {_be(m.subject)} {_where(m)}")
        return _sentence(f"il y a {noun_phrase(meaning.subject)} {_where(meaning)}")


CAPTIONER = French()
