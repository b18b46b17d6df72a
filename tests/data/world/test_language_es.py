import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

ES = get_captioner("es")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_spanish_templates():
    assert ES.caption(M, 0) == "dos círculos rojos pequeños a la izquierda de un cuadrado azul grande"
    assert ES.caption(M, 1) == "Dos círculos rojos pequeños están a la izquierda de un cuadrado azul grande."
    assert ES.caption(M, 2) == "Un cuadrado azul grande está a la derecha de dos círculos rojos pequeños."
    assert ES.caption(M, 3) == "Hay dos círculos rojos pequeños a la izquierda de un cuadrado azul grande."


def test_spanish_feminine_singular_subject_and_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert ES.caption(m, 1) == "Una estrella amarilla grande está encima de tres triángulos negros pequeños."
    assert ES.caption(m, 2) == "Tres triángulos negros pequeños están debajo de una estrella amarilla grande."
    assert ES.caption(m, 3) == "Hay una estrella amarilla grande encima de tres triángulos negros pequeños."


def test_spanish_feminine_agreement_in_singular_and_plural():
    m = Meaning(Group(1, "small", "white", "star"), "below", Group(2, "big", "green", "star"))
    assert ES.caption(m, 0) == "una estrella blanca pequeña debajo de dos estrellas verdes grandes"
    assert ES.caption(m, 1) == "Una estrella blanca pequeña está debajo de dos estrellas verdes grandes."
    assert ES.caption(m, 2) == "Dos estrellas verdes grandes están encima de una estrella blanca pequeña."


def test_spanish_feminine_plural_subject_and_masculine_object():
    m = Meaning(Group(3, "big", "white", "star"), "right_of", Group(1, "small", "green", "circle"))
    assert ES.caption(m, 1) == "Tres estrellas blancas grandes están a la derecha de un círculo verde pequeño."
    assert ES.caption(m, 2) == "Un círculo verde pequeño está a la izquierda de tres estrellas blancas grandes."
    assert ES.caption(m, 3) == "Hay tres estrellas blancas grandes a la derecha de un círculo verde pequeño."


def test_spanish_plural_of_azul():
    m = Meaning(Group(2, "small", "blue", "square"), "above", Group(1, "big", "yellow", "circle"))
    assert ES.caption(m, 1) == "Dos cuadrados azules pequeños están encima de un círculo amarillo grande."


def test_spanish_bad_template():
    with pytest.raises(ValueError):
        ES.caption(M, 4)
