import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

IT = get_captioner("it")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_italian_templates():
    assert IT.caption(M, 0) == "due piccoli cerchi rossi a sinistra di un grande quadrato blu"
    assert IT.caption(M, 1) == "Due piccoli cerchi rossi sono a sinistra di un grande quadrato blu."
    assert IT.caption(M, 2) == "Un grande quadrato blu è a destra di due piccoli cerchi rossi."
    assert IT.caption(M, 3) == "Ci sono due piccoli cerchi rossi a sinistra di un grande quadrato blu."


def test_italian_feminine_singular_subject_and_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert IT.caption(m, 1) == "Una grande stella gialla è sopra tre piccoli triangoli neri."
    assert IT.caption(m, 2) == "Tre piccoli triangoli neri sono sotto una grande stella gialla."
    assert IT.caption(m, 3) == "C'è una grande stella gialla sopra tre piccoli triangoli neri."


def test_italian_feminine_agreement_in_singular_and_plural():
    m = Meaning(Group(1, "small", "white", "star"), "below", Group(2, "big", "green", "star"))
    assert IT.caption(m, 0) == "una piccola stella bianca sotto due grandi stelle verdi"
    assert IT.caption(m, 1) == "Una piccola stella bianca è sotto due grandi stelle verdi."
    assert IT.caption(m, 2) == "Due grandi stelle verdi sono sopra una piccola stella bianca."


def test_italian_feminine_plural_subject_and_masculine_object():
    m = Meaning(Group(3, "big", "white", "star"), "right_of", Group(1, "small", "green", "circle"))
    assert IT.caption(m, 1) == "Tre grandi stelle bianche sono a destra di un piccolo cerchio verde."
    assert IT.caption(m, 2) == "Un piccolo cerchio verde è a sinistra di tre grandi stelle bianche."
    assert IT.caption(m, 3) == "Ci sono tre grandi stelle bianche a destra di un piccolo cerchio verde."


def test_italian_invariable_blu_and_c_e():
    m = Meaning(Group(1, "small", "black", "circle"), "right_of", Group(2, "small", "blue", "star"))
    assert IT.caption(m, 3) == "C'è un piccolo cerchio nero a destra di due piccole stelle blu."


def test_italian_bad_template():
    with pytest.raises(ValueError):
        IT.caption(M, 4)
