"""Mandarin Chinese (simplified) captions: numeral + 个, "颜色的 + 大/小 + 形状", 在/有 with 左边/右边/上方/下方."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {1: "一", 2: "两", 3: "三"}  # 两, not 二, before a measure word
SIZES = {"small": "小", "big": "大"}
COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "white": "白色", "black": "黑色"}
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "五角星"}
RELATIONS = {"left_of": "左边", "right_of": "右边", "above": "上方", "below": "下方"}


def noun_phrase(g: Group) -> str:
    """Numeral and measure word, colour with 的, then the size fused with the noun: "两个红色的小圆形"."""
    return f"{NUMBERS[g.count]}个{COLOURS[g.colour]}的{SIZES[g.size]}{SHAPES[g.shape]}"


class Chinese(Captioner):
    code = "zh"
    name = "Chinese"
    scripts = frozenset({"Hani"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s, rel, o = noun_phrase(meaning.subject), RELATIONS[meaning.relation], noun_phrase(meaning.obj)
        if template == 0:  # relative clause: "在一个蓝色的大正方形左边的两个红色的小圆形"
            return f"在{o}{rel}的{s}"
        if template == 1:  # "两个红色的小圆形在一个蓝色的大正方形的左边。"
            return f"{s}在{o}的{rel}。"
        # existential, place first: "一个蓝色的大正方形的左边有两个红色的小圆形。"
        return f"{o}的{rel}有{s}。"


CAPTIONER = Chinese()
