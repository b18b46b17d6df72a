import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

JA = get_captioner("ja")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_japanese_templates():
    assert JA.caption(M, 0) == "一つの大きい青い四角の左にある二つの小さい赤い丸"
    assert JA.caption(M, 1) == "二つの小さい赤い丸は、一つの大きい青い四角の左にある。"
    assert JA.caption(M, 2) == "一つの大きい青い四角は、二つの小さい赤い丸の右にある。"
    assert JA.caption(M, 3) == "一つの大きい青い四角の左に、小さい赤い丸が二つある。"


def test_japanese_one_above_three():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert JA.caption(m, 0) == "三つの小さい黒い三角の上にある一つの大きい黄色い星"
    assert JA.caption(m, 1) == "一つの大きい黄色い星は、三つの小さい黒い三角の上にある。"
    assert JA.caption(m, 2) == "三つの小さい黒い三角は、一つの大きい黄色い星の下にある。"
    assert JA.caption(m, 3) == "三つの小さい黒い三角の上に、大きい黄色い星が一つある。"


def test_japanese_below_with_the_no_colour_green():
    m = Meaning(Group(3, "big", "green", "triangle"), "below", Group(2, "small", "white", "circle"))
    assert JA.caption(m, 0) == "二つの小さい白い丸の下にある三つの大きい緑の三角"
    assert JA.caption(m, 1) == "三つの大きい緑の三角は、二つの小さい白い丸の下にある。"
    assert JA.caption(m, 3) == "二つの小さい白い丸の下に、大きい緑の三角が三つある。"


def test_japanese_right_of_between_single_objects():
    m = Meaning(Group(1, "small", "black", "square"), "right_of", Group(1, "big", "red", "star"))
    assert JA.caption(m, 1) == "一つの小さい黒い四角は、一つの大きい赤い星の右にある。"
    assert JA.caption(m, 2) == "一つの大きい赤い星は、一つの小さい黒い四角の左にある。"
    assert JA.caption(m, 3) == "一つの大きい赤い星の右に、小さい黒い四角が一つある。"


def test_japanese_bad_template():
    with pytest.raises(ValueError):
        JA.caption(M, -1)
