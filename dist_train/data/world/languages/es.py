"""Spanish captions: noun gender, colour then size adjective after the noun, agreement, "está/están" and "hay"."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

ARTICLES = {"m": "un", "f": "una"}
NUMBERS = {2: "dos", 3: "tres"}
# adjective: (masculine singular, feminine singular, masculine plural, feminine plural)
SIZES = {"small": ("pequeño", "pequeña", "pequeños", "pequeñas"), "big": ("grande", "grande", "grandes", "grandes")}
COLOURS = {"red": ("rojo", "roja", "rojos", "rojas"), "green": ("verde", "verde", "verdes", "verdes"),
           "blue": ("azul", "azul", "azules", "azules"), "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
           "white": ("blanco", "blanca", "blancos", "blancas"), "black": ("negro", "negra", "negros", "negras")}
# shape: (gender, singular, plural)
SHAPES = {"circle": ("m", "círculo", "círculos"), "square": ("m", "cuadrado", "cuadrados"),
          "triangle": ("m", "triángulo", "triángulos"), "star": ("f", "estrella", "estrellas")}
# "de" contracts only with the definite article "el", never with "un"/"una" or a number
RELATIONS = {"left_of": "a la izquierda de", "right_of": "a la derecha de", "above": "encima de",
             "below": "debajo de"}


def noun_phrase(g: Group) -> str:
    """`g` as in "dos círculos rojos pequeños", "un cuadrado azul grande", "una estrella blanca pequeña"."""
    gender, singular, plural = SHAPES[g.shape]
    form = (gender == "f") + 2 * (g.count > 1)  # index into an adjective's four forms
    head = f"{singular if g.count == 1 else plural} {COLOURS[g.colour][form]} {SIZES[g.size][form]}"
    determiner = ARTICLES[gender] if g.count == 1 else NUMBERS[g.count]
    return f"{determiner} {head}"


def _where(m: Meaning) -> str:
    return f"{RELATIONS[m.relation]} {noun_phrase(m.obj)}"


def _be(g: Group) -> str:
    return "está" if g.count == 1 else "están"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class Spanish(Captioner):
    code = "es"
    name = "Spanish"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 0:
            return f"{noun_phrase(meaning.subject)} {_where(meaning)}"
        if template in (1, 2):
            m = meaning if template == 1 else meaning.inverted()
            return _sentence(f"{noun_phrase(m.subject)} {_be(m.subject)} {_where(m)}")
        return _sentence(f"hay {noun_phrase(meaning.subject)} {_where(meaning)}")


CAPTIONER = Spanish()
