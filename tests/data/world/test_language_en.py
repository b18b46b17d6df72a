from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

EN = get_captioner("en")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_english_templates():
    assert EN.caption(M, 0) == "two small red circles to the left of a big blue square"
    assert EN.caption(M, 1) == "Two small red circles are to the left of a big blue square."
    assert EN.caption(M, 2) == "A big blue square is to the right of two small red circles."
    assert EN.caption(M, 3) == "There are two small red circles to the left of a big blue square."


def test_english_singular_subject_and_plural_object():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert EN.caption(m, 1) == "A big yellow star is above three small black triangles."
    assert EN.caption(m, 2) == "Three small black triangles are below a big yellow star."
