"""Japanese captions: prenominal "二つの" counts, floating "が二つ" in the existential, "〜の左に" relations."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {1: "一つ", 2: "二つ", 3: "三つ"}
SIZES = {"small": "小さい", "big": "大きい"}
COLOURS = {"red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "white": "白い", "black": "黒い"}
SHAPES = {"circle": "丸", "square": "四角", "triangle": "三角", "star": "星"}
RELATIONS = {"left_of": "左", "right_of": "右", "above": "上", "below": "下"}


def _bare(g: Group) -> str:
    """Size, colour and shape without the count: "小さい赤い丸"."""
    return f"{SIZES[g.size]}{COLOURS[g.colour]}{SHAPES[g.shape]}"


def noun_phrase(g: Group) -> str:
    """The count before the noun with の, also for one object: "二つの小さい赤い丸"."""
    return f"{NUMBERS[g.count]}の{_bare(g)}"


def _place(meaning: Meaning) -> str:
    """Where the subject is: "一つの大きい青い四角の左に"."""
    return f"{noun_phrase(meaning.obj)}の{RELATIONS[meaning.relation]}に"


class Japanese(Captioner):
    code = "ja"
    name = "Japanese"
    scripts = frozenset({"Hani", "Hira", "Kana"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s, place = meaning.subject, _place(meaning)
        if template == 0:  # relative clause: "…の左にある二つの小さい赤い丸"
            return f"{place}ある{noun_phrase(s)}"
        if template == 1:  # topic + location: "二つの小さい赤い丸は、…の左にある。"
            return f"{noun_phrase(s)}は、{place}ある。"
        # existential, location first, count floated after が: "…の左に、小さい赤い丸が二つある。"
        return f"{place}、{_bare(s)}が{NUMBERS[s.count]}ある。"


CAPTIONER = Japanese()
