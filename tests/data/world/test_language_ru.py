from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

RU = get_captioner("ru")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_russian_templates():
    assert RU.caption(M, 0) == "два маленьких красных круга слева от большого синего квадрата"
    assert RU.caption(M, 1) == "Два маленьких красных круга находятся слева от большого синего квадрата."
    assert RU.caption(M, 2) == "Большой синий квадрат находится справа от двух маленьких красных кругов."
    assert RU.caption(M, 3) == "Слева от большого синего квадрата есть два маленьких красных круга."


def test_russian_feminine_subject_and_instrumental_plural_after_nad_pod():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert RU.caption(m, 0) == "большая жёлтая звезда над тремя маленькими чёрными треугольниками"
    assert RU.caption(m, 1) == "Большая жёлтая звезда находится над тремя маленькими чёрными треугольниками."
    assert RU.caption(m, 2) == "Три маленьких чёрных треугольника находятся под большой жёлтой звездой."
    assert RU.caption(m, 3) == "Над тремя маленькими чёрными треугольниками есть большая жёлтая звезда."


def test_russian_feminine_numerals_and_genitive_plural():
    m = Meaning(Group(3, "small", "green", "star"), "right_of", Group(2, "big", "white", "star"))
    assert RU.caption(m, 1) == "Три маленькие зелёные звезды находятся справа от двух больших белых звёзд."
    assert RU.caption(m, 2) == "Две большие белые звезды находятся слева от трёх маленьких зелёных звёзд."


def test_russian_instrumental_singular():
    m = Meaning(Group(1, "small", "white", "triangle"), "below", Group(1, "big", "green", "circle"))
    assert RU.caption(m, 1) == "Маленький белый треугольник находится под большим зелёным кругом."
    assert RU.caption(m, 2) == "Большой зелёный круг находится над маленьким белым треугольником."
    assert RU.caption(m, 3) == "Под большим зелёным кругом есть маленький белый треугольник."


def test_russian_instrumental_plural_of_both_genders():
    m = Meaning(Group(2, "big", "black", "square"), "below", Group(2, "small", "blue", "star"))
    assert RU.caption(m, 1) == "Два больших чёрных квадрата находятся под двумя маленькими синими звёздами."
    assert RU.caption(m, 2) == "Две маленькие синие звезды находятся над двумя большими чёрными квадратами."


def test_russian_genitive_singular_of_both_genders():
    m = Meaning(Group(1, "small", "red", "square"), "left_of", Group(1, "small", "yellow", "star"))
    assert RU.caption(m, 1) == "Маленький красный квадрат находится слева от маленькой жёлтой звезды."
    assert RU.caption(m, 2) == "Маленькая жёлтая звезда находится справа от маленького красного квадрата."


def test_russian_three_and_masculine_genitive_plural():
    m = Meaning(Group(3, "big", "blue", "triangle"), "right_of", Group(3, "small", "red", "circle"))
    assert RU.caption(m, 0) == "три больших синих треугольника справа от трёх маленьких красных кругов"
    assert RU.caption(m, 3) == "Справа от трёх маленьких красных кругов есть три больших синих треугольника."


def test_russian_one_two_three_stay_distinct():
    captions = {RU.caption(Meaning(Group(n, "big", "red", "star"), "above", Group(1, "small", "blue", "circle")), 1)
                for n in (1, 2, 3)}
    assert captions == {
        "Большая красная звезда находится над маленьким синим кругом.",
        "Две большие красные звезды находятся над маленьким синим кругом.",
        "Три большие красные звезды находятся над маленьким синим кругом.",
    }
