from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

TR = get_captioner("tr")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_turkish_templates():
    assert TR.caption(M, 0) == "büyük mavi bir karenin solundaki iki küçük kırmızı daire"
    assert TR.caption(M, 1) == "İki küçük kırmızı daire büyük mavi bir karenin solundadır."
    assert TR.caption(M, 2) == "Büyük mavi bir kare iki küçük kırmızı dairenin sağındadır."
    assert TR.caption(M, 3) == "Büyük mavi bir karenin solunda iki küçük kırmızı daire var."


def test_turkish_above_below_with_front_and_back_harmony():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert TR.caption(m, 0) == "üç küçük siyah üçgenin üstündeki büyük sarı bir yıldız"
    assert TR.caption(m, 1) == "Büyük sarı bir yıldız üç küçük siyah üçgenin üstündedir."
    assert TR.caption(m, 2) == "Üç küçük siyah üçgen büyük sarı bir yıldızın altındadır."
    assert TR.caption(m, 3) == "Üç küçük siyah üçgenin üstünde büyük sarı bir yıldız var."


def test_turkish_singular_objects():
    m = Meaning(Group(1, "small", "white", "triangle"), "below", Group(1, "big", "green", "circle"))
    assert TR.caption(m, 1) == "Küçük beyaz bir üçgen büyük yeşil bir dairenin altındadır."
    assert TR.caption(m, 2) == "Büyük yeşil bir daire küçük beyaz bir üçgenin üstündedir."


def test_turkish_three_and_right_of():
    m = Meaning(Group(3, "big", "blue", "triangle"), "right_of", Group(3, "small", "red", "circle"))
    assert TR.caption(m, 1) == "Üç büyük mavi üçgen üç küçük kırmızı dairenin sağındadır."
    assert TR.caption(m, 3) == "Üç küçük kırmızı dairenin sağında üç büyük mavi üçgen var."


def test_turkish_plural_star_object_and_capital_dotted_i():
    m = Meaning(Group(1, "small", "green", "circle"), "left_of", Group(2, "big", "white", "star"))
    assert TR.caption(m, 1) == "Küçük yeşil bir daire iki büyük beyaz yıldızın solundadır."
    assert TR.caption(m, 2) == "İki büyük beyaz yıldız küçük yeşil bir dairenin sağındadır."
    assert TR.caption(m, 3) == "İki büyük beyaz yıldızın solunda küçük yeşil bir daire var."
