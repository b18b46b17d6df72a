import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.languages.ko import particle
from dist_train.data.world.meaning import Group, Meaning

KO = get_captioner("ko")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_korean_templates():
    assert KO.caption(M, 0) == "큰 파란 사각형 한 개의 왼쪽에 있는 작은 빨간 원 두 개"
    assert KO.caption(M, 1) == "작은 빨간 원 두 개는 큰 파란 사각형 한 개의 왼쪽에 있다."
    assert KO.caption(M, 2) == "큰 파란 사각형 한 개는 작은 빨간 원 두 개의 오른쪽에 있다."
    assert KO.caption(M, 3) == "큰 파란 사각형 한 개의 왼쪽에 작은 빨간 원이 두 개 있다."


def test_korean_one_above_three():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert KO.caption(m, 0) == "작은 검은 삼각형 세 개의 위에 있는 큰 노란 별 한 개"
    assert KO.caption(m, 1) == "큰 노란 별 한 개는 작은 검은 삼각형 세 개의 위에 있다."
    assert KO.caption(m, 2) == "작은 검은 삼각형 세 개는 큰 노란 별 한 개의 아래에 있다."
    assert KO.caption(m, 3) == "작은 검은 삼각형 세 개의 위에 큰 노란 별이 한 개 있다."


def test_korean_below_and_right_of():
    m = Meaning(Group(3, "big", "green", "triangle"), "below", Group(2, "small", "white", "circle"))
    assert KO.caption(m, 1) == "큰 초록 삼각형 세 개는 작은 하얀 원 두 개의 아래에 있다."
    assert KO.caption(m, 3) == "작은 하얀 원 두 개의 아래에 큰 초록 삼각형이 세 개 있다."
    m = Meaning(Group(1, "small", "black", "square"), "right_of", Group(1, "big", "red", "star"))
    assert KO.caption(m, 1) == "작은 검은 사각형 한 개는 큰 빨간 별 한 개의 오른쪽에 있다."
    assert KO.caption(m, 2) == "큰 빨간 별 한 개는 작은 검은 사각형 한 개의 왼쪽에 있다."
    assert KO.caption(m, 3) == "큰 빨간 별 한 개의 오른쪽에 작은 검은 사각형이 한 개 있다."


def test_korean_particle_allomorphs():
    assert particle("원", "이", "가") == "원이"
    assert particle("별", "이", "가") == "별이"
    assert particle("삼각형", "이", "가") == "삼각형이"
    assert particle("두 개", "이", "가") == "두 개가"
    assert particle("별", "은", "는") == "별은"
    assert particle("세 개", "은", "는") == "세 개는"


def test_korean_bad_template():
    with pytest.raises(ValueError):
        KO.caption(M, 4)
