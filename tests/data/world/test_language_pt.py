import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

PT = get_captioner("pt")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_portuguese_templates():
    assert PT.caption(M, 0) == "dois círculos vermelhos pequenos à esquerda de um quadrado azul grande"
    assert PT.caption(M, 1) == "Dois círculos vermelhos pequenos estão à esquerda de um quadrado azul grande."
    assert PT.caption(M, 2) == "Um quadrado azul grande está à direita de dois círculos vermelhos pequenos."
    assert PT.caption(M, 3) == "Há dois círculos vermelhos pequenos à esquerda de um quadrado azul grande."


def test_portuguese_feminine_singular_subject_and_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert PT.caption(m, 1) == "Uma estrela amarela grande está acima de três triângulos pretos pequenos."
    assert PT.caption(m, 2) == "Três triângulos pretos pequenos estão abaixo de uma estrela amarela grande."
    assert PT.caption(m, 3) == "Há uma estrela amarela grande acima de três triângulos pretos pequenos."


def test_portuguese_feminine_agreement_and_duas():
    m = Meaning(Group(1, "small", "white", "star"), "below", Group(2, "big", "green", "star"))
    assert PT.caption(m, 0) == "uma estrela branca pequena abaixo de duas estrelas verdes grandes"
    assert PT.caption(m, 1) == "Uma estrela branca pequena está abaixo de duas estrelas verdes grandes."
    assert PT.caption(m, 2) == "Duas estrelas verdes grandes estão acima de uma estrela branca pequena."


def test_portuguese_feminine_plural_subject_and_masculine_object():
    m = Meaning(Group(3, "big", "white", "star"), "right_of", Group(1, "small", "green", "circle"))
    assert PT.caption(m, 1) == "Três estrelas brancas grandes estão à direita de um círculo verde pequeno."
    assert PT.caption(m, 2) == "Um círculo verde pequeno está à esquerda de três estrelas brancas grandes."
    assert PT.caption(m, 3) == "Há três estrelas brancas grandes à direita de um círculo verde pequeno."


def test_portuguese_plural_of_azul():
    m = Meaning(Group(2, "small", "blue", "square"), "above", Group(1, "big", "yellow", "circle"))
    assert PT.caption(m, 1) == "Dois quadrados azuis pequenos estão acima de um círculo amarelo grande."


def test_portuguese_bad_template():
    with pytest.raises(ValueError):
        PT.caption(M, 4)
