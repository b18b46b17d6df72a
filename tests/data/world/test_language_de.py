import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

DE = get_captioner("de")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_german_templates():
    assert DE.caption(M, 0) == "zwei kleine rote Kreise links von einem großen blauen Quadrat"
    assert DE.caption(M, 1) == "Zwei kleine rote Kreise sind links von einem großen blauen Quadrat."
    assert DE.caption(M, 2) == "Ein großes blaues Quadrat ist rechts von zwei kleinen roten Kreisen."
    assert DE.caption(M, 3) == "Es gibt zwei kleine rote Kreise links von einem großen blauen Quadrat."


def test_german_masculine_subject_and_dative_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert DE.caption(m, 0) == "ein großer gelber Stern über drei kleinen schwarzen Dreiecken"
    assert DE.caption(m, 1) == "Ein großer gelber Stern ist über drei kleinen schwarzen Dreiecken."
    assert DE.caption(m, 2) == "Drei kleine schwarze Dreiecke sind unter einem großen gelben Stern."
    assert DE.caption(m, 3) == "Es gibt einen großen gelben Stern über drei kleinen schwarzen Dreiecken."


def test_german_neuter_subject_in_nominative_and_accusative():
    m = Meaning(Group(1, "small", "white", "triangle"), "below", Group(1, "big", "green", "circle"))
    assert DE.caption(m, 1) == "Ein kleines weißes Dreieck ist unter einem großen grünen Kreis."
    assert DE.caption(m, 2) == "Ein großer grüner Kreis ist über einem kleinen weißen Dreieck."
    assert DE.caption(m, 3) == "Es gibt ein kleines weißes Dreieck unter einem großen grünen Kreis."


def test_german_masculine_accusative_after_es_gibt():
    m = Meaning(Group(1, "small", "red", "circle"), "left_of", Group(1, "big", "black", "star"))
    assert DE.caption(m, 0) == "ein kleiner roter Kreis links von einem großen schwarzen Stern"
    assert DE.caption(m, 3) == "Es gibt einen kleinen roten Kreis links von einem großen schwarzen Stern."


def test_german_plural_subject_and_plural_object():
    m = Meaning(Group(3, "big", "green", "square"), "right_of", Group(2, "small", "yellow", "star"))
    assert DE.caption(m, 1) == "Drei große grüne Quadrate sind rechts von zwei kleinen gelben Sternen."
    assert DE.caption(m, 2) == "Zwei kleine gelbe Sterne sind links von drei großen grünen Quadraten."
    assert DE.caption(m, 3) == "Es gibt drei große grüne Quadrate rechts von zwei kleinen gelben Sternen."


def test_german_bad_template():
    with pytest.raises(ValueError):
        DE.caption(M, 4)
