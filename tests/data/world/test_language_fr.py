import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

FR = get_captioner("fr")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_french_templates():
    assert FR.caption(M, 0) == "deux petits cercles rouges à gauche d'un grand carré bleu"
    assert FR.caption(M, 1) == "Deux petits cercles rouges sont à gauche d'un grand carré bleu."
    assert FR.caption(M, 2) == "Un grand carré bleu est à droite de deux petits cercles rouges."
    assert FR.caption(M, 3) == "Il y a deux petits cercles rouges à gauche d'un grand carré bleu."


def test_french_feminine_singular_subject_and_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert FR.caption(m, 1) == "Une grande étoile jaune est au-dessus de trois petits triangles noirs."
    assert FR.caption(m, 2) == "Trois petits triangles noirs sont au-dessous d'une grande étoile jaune."
    assert FR.caption(m, 3) == "Il y a une grande étoile jaune au-dessus de trois petits triangles noirs."


def test_french_feminine_agreement_in_singular_and_plural():
    m = Meaning(Group(1, "small", "white", "star"), "below", Group(2, "big", "green", "star"))
    assert FR.caption(m, 0) == "une petite étoile blanche au-dessous de deux grandes étoiles vertes"
    assert FR.caption(m, 1) == "Une petite étoile blanche est au-dessous de deux grandes étoiles vertes."
    assert FR.caption(m, 2) == "Deux grandes étoiles vertes sont au-dessus d'une petite étoile blanche."


def test_french_feminine_plural_subject_and_masculine_object():
    m = Meaning(Group(3, "big", "white", "star"), "right_of", Group(1, "small", "green", "circle"))
    assert FR.caption(m, 1) == "Trois grandes étoiles blanches sont à droite d'un petit cercle vert."
    assert FR.caption(m, 2) == "Un petit cercle vert est à gauche de trois grandes étoiles blanches."
    assert FR.caption(m, 3) == "Il y a trois grandes étoiles blanches à droite d'un petit cercle vert."


def test_french_elision_before_feminine_article():
    m = Meaning(Group(2, "small", "black", "square"), "above", Group(1, "small", "blue", "star"))
    assert FR.caption(m, 1) == "Deux petits carrés noirs sont au-dessus d'une petite étoile bleue."


def test_french_bad_template():
    with pytest.raises(ValueError):
        FR.caption(M, 4)
