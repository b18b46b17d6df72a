"""Portuguese captions: noun gender, colour then size adjective after the noun, agreement, "um/uma", "dois/duas"."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

# determiner by count and gender; "dois" has a feminine form
NUMBERS = {1: {"m": "um", "f": "uma"}, 2: {"m": "dois", "f": "duas"}, 3: {"m": "três", "f": "três"}}
# adjective: (masculine singular, feminine singular, masculine plural, feminine plural)
SIZES = {"small": ("pequeno", "pequena", "pequenos", "pequenas"), "big": ("grande", "grande", "grandes", "grandes")}
COLOURS = {"red": ("vermelho", "vermelha", "vermelhos", "vermelhas"), "green": ("verde", "verde", "verdes", "verdes"),
           "blue": ("azul", "azul", "azuis", "azuis"), "yellow": ("amarelo", "amarela", "amarelos", "amarelas"),
           "white": ("branco", "branca", "brancos", "brancas"), "black": ("preto", "preta", "pretos", "pretas")}
# shape: (gender, singular, plural)
SHAPES = {"circle": ("m", "círculo", "círculos"), "square": ("m", "quadrado", "quadrados"),
          "triangle": ("m", "triângulo", "triângulos"), "star": ("f", "estrela", "estrelas")}
# "de" stays apart from "um"/"uma" (standard modern spelling, not "dum"/"duma")
RELATIONS = {"left_of": "à esquerda de", "right_of": "à direita de", "above": "acima de", "below": "abaixo de"}


def noun_phrase(g: Group) -> str:
    """`g` as in "dois círculos vermelhos pequenos", "um quadrado azul grande", "duas estrelas brancas grandes"."""
    gender, singular, plural = SHAPES[g.shape]
    form = (gender == "f") + 2 * (g.count > 1)  # index into an adjective's four forms
    head = f"{singular if g.count == 1 else plural} {COLOURS[g.colour][form]} {SIZES[g.size][form]}"
    return f"{NUMBERS[g.count][gender]} {head}"


def _where(m: Meaning) -> str:
    return f"{RELATIONS[m.relation]} {noun_phrase(m.obj)}"


def _be(g: Group) -> str:
    return "está" if g.count == 1 else "estão"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class Portuguese(Captioner):
    code = "pt"
    name = "Portuguese"
    scripts = frozenset({"Latn"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 0:
            return f"{noun_phrase(meaning.subject)} {_where(meaning)}"
        if template in (1, 2):
            m = meaning if template == 1 else meaning.inverted()
            return _sentence(f"{noun_phrase(m.subject)} {_be(m.subject)} {_where(m)}")
        return _sentence(f"há {noun_phrase(meaning.subject)} {_where(meaning)}")


CAPTIONER = Portuguese()
