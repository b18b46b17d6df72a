import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

ZH = get_captioner("zh")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_chinese_templates():
    assert ZH.caption(M, 0) == "在一个蓝色的大正方形左边的两个红色的小圆形"
    assert ZH.caption(M, 1) == "两个红色的小圆形在一个蓝色的大正方形的左边。"
    assert ZH.caption(M, 2) == "一个蓝色的大正方形在两个红色的小圆形的右边。"
    assert ZH.caption(M, 3) == "一个蓝色的大正方形的左边有两个红色的小圆形。"


def test_chinese_one_above_three():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert ZH.caption(m, 0) == "在三个黑色的小三角形上方的一个黄色的大五角星"
    assert ZH.caption(m, 1) == "一个黄色的大五角星在三个黑色的小三角形的上方。"
    assert ZH.caption(m, 2) == "三个黑色的小三角形在一个黄色的大五角星的下方。"
    assert ZH.caption(m, 3) == "三个黑色的小三角形的上方有一个黄色的大五角星。"


def test_chinese_below_and_right_of():
    m = Meaning(Group(3, "big", "green", "triangle"), "below", Group(2, "small", "white", "circle"))
    assert ZH.caption(m, 1) == "三个绿色的大三角形在两个白色的小圆形的下方。"
    assert ZH.caption(m, 3) == "两个白色的小圆形的下方有三个绿色的大三角形。"
    m = Meaning(Group(1, "small", "black", "square"), "right_of", Group(1, "big", "red", "star"))
    assert ZH.caption(m, 1) == "一个黑色的小正方形在一个红色的大五角星的右边。"
    assert ZH.caption(m, 2) == "一个红色的大五角星在一个黑色的小正方形的左边。"
    assert ZH.caption(m, 3) == "一个红色的大五角星的右边有一个黑色的小正方形。"


def test_chinese_two_is_liang_before_the_measure_word():
    for t in range(4):
        assert "二" not in ZH.caption(M, t)


def test_chinese_bad_template():
    with pytest.raises(ValueError):
        ZH.caption(M, 4)
