"""Arabic (MSA, unvocalised) captions: noun gender, dual case, numeral polarity, non-human plural and verb agreement."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

# shape: (gender, singular, plural); the dual is built from the singular
NOUNS = {
    "circle": ("f", "دائرة", "دوائر"),
    "square": ("m", "مربع", "مربعات"),
    "triangle": ("m", "مثلث", "مثلثات"),
    "star": ("f", "نجمة", "نجوم"),
}
# adjectives follow the noun, colour before size: (masculine, feminine) singular.
# Plurals of things (non-human) take the feminine singular: ثلاث دوائر حمراء صغيرة.
COLOURS = {"red": ("أحمر", "حمراء"), "green": ("أخضر", "خضراء"), "blue": ("أزرق", "زرقاء"),
           "yellow": ("أصفر", "صفراء"), "white": ("أبيض", "بيضاء"), "black": ("أسود", "سوداء")}
SIZES = {"small": ("صغير", "صغيرة"), "big": ("كبير", "كبيرة")}
# gender polarity: three takes the gender opposite to the singular noun (ثلاث دوائر، ثلاثة مربعات)
THREE = {"m": "ثلاثة", "f": "ثلاث"}
# each relation governs the genitive (idafa)
RELATIONS = {"left_of": "على يسار", "right_of": "على يمين", "above": "فوق", "below": "تحت"}
# a verb before its subject agrees in gender only; plurals of things count as feminine
LOCATED = {"m": "يقع", "f": "تقع"}
EXISTS = {"m": "يوجد", "f": "توجد"}


def _dual(word: str, genitive: bool) -> str:
    """Dual of a noun or adjective: -ان in the nominative, -ين in the genitive (دائرة → دائرتان/دائرتين)."""
    ending = "ين" if genitive else "ان"
    if word.endswith("ة"):
        return word[:-1] + "ت" + ending
    if word.endswith("اء"):  # حمراء → حمراوان
        return word[:-1] + "و" + ending
    return word + ending


def noun_phrase(g: Group, genitive: bool = False) -> str:
    gender, singular, plural = NOUNS[g.shape]
    index = 1 if gender == "f" else 0
    if g.count == 1:  # no numeral: the bare singular means "one"
        return f"{singular} {COLOURS[g.colour][index]} {SIZES[g.size][index]}"
    if g.count == 2:  # no numeral: the dual means "two"
        words = (singular, COLOURS[g.colour][index], SIZES[g.size][index])
        return " ".join(_dual(w, genitive) for w in words)
    # ثلاث/ثلاثة + genitive plural; unvocalised, nominative and genitive are spelt alike
    return f"{THREE[gender]} {plural} {COLOURS[g.colour][1]} {SIZES[g.size][1]}"


def _verb_gender(g: Group) -> str:
    return NOUNS[g.shape][0] if g.count < 3 else "f"


class Arabic(Captioner):
    code = "ar"
    name = "Arabic"
    scripts = frozenset({"Arab"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            return self.caption(meaning.inverted(), 1)
        s = meaning.subject
        phrase = f"{noun_phrase(s)} {RELATIONS[meaning.relation]} {noun_phrase(meaning.obj, genitive=True)}"
        if template == 0:
            return phrase
        verb = LOCATED if template == 1 else EXISTS  # "X is located ..." / "there is X ..."
        return f"{verb[_verb_gender(s)]} {phrase}."


CAPTIONER = Arabic()
