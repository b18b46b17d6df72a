"""Korean captions: native numerals with the counter 개, "~의 왼쪽에" relations, 이/가 and 은/는 allomorphs."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

NUMBERS = {1: "한", 2: "두", 3: "세"}  # native numerals in their forms before a counter
SIZES = {"small": "작은", "big": "큰"}
COLOURS = {"red": "빨간", "green": "초록", "blue": "파란", "yellow": "노란", "white": "하얀", "black": "검은"}
SHAPES = {"circle": "원", "square": "사각형", "triangle": "삼각형", "star": "별"}
RELATIONS = {"left_of": "왼쪽", "right_of": "오른쪽", "above": "위", "below": "아래"}


def _has_final_consonant(word: str) -> bool:
    """True when the last Hangul syllable of `word` ends in a consonant (has a batchim)."""
    code = ord(word[-1]) - 0xAC00
    if not 0 <= code < 11172:
        raise ValueError(f"not a Hangul syllable: {word[-1]!r}")
    return code % 28 != 0


def particle(word: str, after_consonant: str, after_vowel: str) -> str:
    """`word` with the allomorph of a particle that fits its ending: 원이, 개가, 별은, 개는."""
    return word + (after_consonant if _has_final_consonant(word) else after_vowel)


def _bare(g: Group) -> str:
    """Size, colour and shape without the count: "작은 빨간 원"."""
    return f"{SIZES[g.size]} {COLOURS[g.colour]} {SHAPES[g.shape]}"


def _count(g: Group) -> str:
    return f"{NUMBERS[g.count]} 개"


def noun_phrase(g: Group) -> str:
    """The count after the noun, also for one object: "작은 빨간 원 두 개"."""
    return f"{_bare(g)} {_count(g)}"


def _place(meaning: Meaning) -> str:
    """Where the subject is: "큰 파란 사각형 한 개의 왼쪽에"."""
    return f"{noun_phrase(meaning.obj)}의 {RELATIONS[meaning.relation]}에"


class Korean(Captioner):
    code = "ko"
    name = "Korean"
    scripts = frozenset({"Hang"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s, place = meaning.subject, _place(meaning)
        if template == 0:  # relative clause: "…의 왼쪽에 있는 작은 빨간 원 두 개"
            return f"{place} 있는 {noun_phrase(s)}"
        if template == 1:  # topic + location: "작은 빨간 원 두 개는 …의 왼쪽에 있다."
            return f"{particle(noun_phrase(s), '은', '는')} {place} 있다."
        # existential, location first, count floated after the subject: "…의 왼쪽에 작은 빨간 원이 두 개 있다."
        return f"{place} {particle(_bare(s), '이', '가')} {_count(s)} 있다."


CAPTIONER = Korean()
