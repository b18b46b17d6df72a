"""English captions: adjective order size-colour, indefinite article for one object."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {2: "two", 3: "three"}
SIZES = {"small": "small", "big": "big"}
COLOURS = {c: c for c in ("red", "green", "blue", "yellow", "white", "black")}
SHAPES = {"circle": ("circle", "circles"), "square": ("square", "squares"),
          "triangle": ("triangle", "triangles"), "star": ("star", "stars")}
RELATIONS = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below"}


def noun_phrase(g: Group) -> str:
    singular, plural = SHAPES[g.shape]
    head = f"{SIZES[g.size]} {COLOURS[g.colour]} {singular if g.count == 1 else plural}"
    if g.count == 1:
        article = "an" if head[0] in "aeiou" else "a"
        return f"{article} {head}"
    return f"{NUMBERS[g.count]} {head}"


def _be(g: Group) -> str:
    return "is" if g.count == 1 else "are"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class English(Captioner):
    code = "en"
    name = "English"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        s, rel, o = meaning.subject, RELATIONS[meaning.relation], meaning.obj
        if template == 0:
            return f"{noun_phrase(s)} {rel} {noun_phrase(o)}"
        if template == 1:
            return _sentence(f"{noun_phrase(s)} {_be(s)} {rel} {noun_phrase(o)}")
        if template == 2:
            inv = meaning.inverted()
            return _sentence(f"{noun_phrase(inv.subject)} {_be(inv.subject)} {RELATIONS[inv.relation]} "
                             f"{noun_phrase(inv.obj)}")
        return _sentence(f"there {_be(s)} {noun_phrase(s)} {rel} {noun_phrase(o)}")


CAPTIONER = English()
