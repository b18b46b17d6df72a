"""Russian captions: noun gender, adjective agreement, the cases after relations and the government of два/три."""

from __future__ import annotations

from ..meaning import Group, Meaning
from .base import Captioner

# gender; nominative, genitive, instrumental singular; genitive, instrumental plural
NOUNS = {
    "circle": ("m", "круг", "круга", "кругом", "кругов", "кругами"),
    "square": ("m", "квадрат", "квадрата", "квадратом", "квадратов", "квадратами"),
    "triangle": ("m", "треугольник", "треугольника", "треугольником", "треугольников", "треугольниками"),
    "star": ("f", "звезда", "звезды", "звездой", "звёзд", "звёздами"),
}
# adjectives in the dictionary form (masculine nominative singular); the other forms are derived
SIZES = {"small": "маленький", "big": "большой"}
COLOURS = {"red": "красный", "green": "зелёный", "blue": "синий", "yellow": "жёлтый",
           "white": "белый", "black": "чёрный"}
# numeral by case; in the nominative два varies with gender
NUMERALS = {
    2: {"nom": {"m": "два", "f": "две"}, "gen": "двух", "ins": "двумя"},
    3: {"nom": {"m": "три", "f": "три"}, "gen": "трёх", "ins": "тремя"},
}
# preposition and the case it governs
RELATIONS = {"left_of": ("слева от", "gen"), "right_of": ("справа от", "gen"),
             "above": ("над", "ins"), "below": ("под", "ins")}

# adjective endings by (gender or "pl", case): hard stems (красный) and soft stems (синий)
_HARD = {("m", "nom"): "ый", ("m", "gen"): "ого", ("m", "ins"): "ым",
         ("f", "nom"): "ая", ("f", "gen"): "ой", ("f", "ins"): "ой",
         ("pl", "nom"): "ые", ("pl", "gen"): "ых", ("pl", "ins"): "ыми"}
_SOFT = {("m", "nom"): "ий", ("m", "gen"): "его", ("m", "ins"): "им",
         ("f", "nom"): "яя", ("f", "gen"): "ей", ("f", "ins"): "ей",
         ("pl", "nom"): "ие", ("pl", "gen"): "их", ("pl", "ins"): "ими"}


def adjective(lemma: str, form: str, case: str) -> str:
    """`lemma` agreeing with `form` ("m", "f" or "pl") in `case` ("nom", "gen" or "ins")."""
    if (form, case) == ("m", "nom"):
        return lemma  # also covers the stressed ending of большой
    stem = lemma[:-2]
    if lemma.endswith("ний"):
        return stem + _SOFT[(form, case)]
    ending = _HARD[(form, case)]
    if stem[-1] in "гкхжшчщ":  # spelling rule: и, not ы, after velars and sibilants
        ending = ending.replace("ы", "и")
    return stem + ending


def noun_phrase(g: Group, case: str) -> str:
    gender, nom, gen, ins, gen_pl, ins_pl = NOUNS[g.shape]
    singular, plural = {"nom": nom, "gen": gen, "ins": ins}, {"gen": gen_pl, "ins": ins_pl}

    def adjectives(form: str, adj_case: str) -> str:
        return f"{adjective(SIZES[g.size], form, adj_case)} {adjective(COLOURS[g.colour], form, adj_case)}"

    if g.count == 1:  # no numeral: a bare singular is "one" (два/три always mark 2 and 3)
        return f"{adjectives(gender, case)} {singular[case]}"
    if case == "nom":
        # два/три + genitive singular noun; the adjective is genitive plural with masculine nouns
        # and (the standard choice) nominative plural with feminine ones: два маленьких круга, две маленькие звезды
        return f"{NUMERALS[g.count]['nom'][gender]} {adjectives('pl', 'gen' if gender == 'm' else 'nom')} {gen}"
    # in the oblique cases the numeral, adjective and plural noun all take the case: над двумя маленькими кругами
    return f"{NUMERALS[g.count][case]} {adjectives('pl', case)} {plural[case]}"


def _location(meaning: Meaning) -> str:
    preposition, case = RELATIONS[meaning.relation]
    return f"{preposition} {noun_phrase(meaning.obj, case)}"


def _verb(g: Group) -> str:
    return "находится" if g.count == 1 else "находятся"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


class Russian(Captioner):
    code = "ru"
    name = "Russian"
    scripts = frozenset({"Cyrl"})

    def caption(self, meaning: Meaning, template: int) -> str:
        self._check_template(template)
        if template == 2:
            meaning, template = meaning.inverted(), 1
        s = noun_phrase(meaning.subject, "nom")
        if template == 0:
            return f"{s} {_location(meaning)}"
        if template == 1:
            return _sentence(f"{s} {_verb(meaning.subject)} {_location(meaning)}")
        # existential: the place first, then "есть" and what is there
        return _sentence(f"{_location(meaning)} есть {s}")


CAPTIONER = Russian()
