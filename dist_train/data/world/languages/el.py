"""Greek captions: noun gender, article, numeral and adjective agreement, the accusative after από."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

# gender; nominative and accusative singular; nominative and accusative plural
NOUNS = {
    "circle": ("m", "κύκλος", "κύκλο", "κύκλοι", "κύκλους"),
    "square": ("n", "τετράγωνο", "τετράγωνο", "τετράγωνα", "τετράγωνα"),
    "triangle": ("n", "τρίγωνο", "τρίγωνο", "τρίγωνα", "τρίγωνα"),
    "star": ("n", "αστέρι", "αστέρι", "αστέρια", "αστέρια"),
}
# adjectives in -ος/-ός (masculine nominative singular); μπλε does not decline
SIZES = {"small": "μικρός", "big": "μεγάλος"}
COLOURS = {"red": "κόκκινος", "green": "πράσινος", "blue": "μπλε", "yellow": "κίτρινος",
           "white": "άσπρος", "black": "μαύρος"}
# one (the indefinite article) by gender and case, two and three by gender; έναν always keeps its ν
ONE = {("m", "nom"): "ένας", ("m", "acc"): "έναν", ("n", "nom"): "ένα", ("n", "acc"): "ένα"}
NUMBERS = {2: {"m": "δύο", "n": "δύο"}, 3: {"m": "τρεις", "n": "τρία"}}
RELATIONS = {"left_of": "αριστερά από", "right_of": "δεξιά από", "above": "πάνω από", "below": "κάτω από"}

# endings of -ος adjectives by (gender, number, case); an accented -ός keeps the accent on the ending
_ENDINGS = {("m", "sg", "nom"): "ος", ("m", "sg", "acc"): "ο", ("m", "pl", "nom"): "οι", ("m", "pl", "acc"): "ους",
            ("n", "sg", "nom"): "ο", ("n", "sg", "acc"): "ο", ("n", "pl", "nom"): "α", ("n", "pl", "acc"): "α"}
_ACCENTED = {"ος": "ός", "ο": "ό", "οι": "οί", "ους": "ούς", "α": "ά"}


def adjective(lemma: str, gender: str, number: str, case: str) -> str:
    if not lemma.endswith(("ος", "ός")):
        return lemma  # indeclinable (μπλε)
    ending = _ENDINGS[(gender, number, case)]
    return lemma[:-2] + (_ACCENTED[ending] if lemma.endswith("ός") else ending)


def noun_phrase(g: Group, case: str) -> str:
    gender, nom, acc, nom_pl, acc_pl = NOUNS[g.shape]
    forms = {("sg", "nom"): nom, ("sg", "acc"): acc, ("pl", "nom"): nom_pl, ("pl", "acc"): acc_pl}
    number = "sg" if g.count == 1 else "pl"
    determiner = ONE[(gender, case)] if g.count == 1 else NUMBERS[g.count][gender]
    size = adjective(SIZES[g.size], gender, number, case)
    colour = adjective(COLOURS[g.colour], gender, number, case)
    return f"{determiner} {size} {colour} {forms[(number, case)]}"


def _location(meaning: Meaning) -> str:
    return f"{RELATIONS[meaning.relation]} {noun_phrase(meaning.obj, 'acc')}"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class Greek(Captioner):
    code = "el"
    name = "Greek"
    scripts = frozenset({"Grek"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s = noun_phrase(meaning.subject, "nom")
        if template == 0:
            return f"{s} {_location(meaning)}"
        if template == 1:
            return _sentence(f"{s} είναι {_location(meaning)}")
        there = "υπάρχει" if meaning.subject.count == 1 else "υπάρχουν"
        return _sentence(f"{there} {s} {_location(meaning)}")


CAPTIONER = Greek()
