import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

AR = get_captioner("ar")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_arabic_templates():
    # feminine dual: nominative as subject, genitive after a relation
    assert AR.caption(M, 0) == "دائرتان حمراوان صغيرتان على يسار مربع أزرق كبير"
    assert AR.caption(M, 1) == "تقع دائرتان حمراوان صغيرتان على يسار مربع أزرق كبير."
    assert AR.caption(M, 2) == "يقع مربع أزرق كبير على يمين دائرتين حمراوين صغيرتين."
    assert AR.caption(M, 3) == "توجد دائرتان حمراوان صغيرتان على يسار مربع أزرق كبير."


def test_arabic_three_with_gender_polarity_and_feminine_singular_adjectives():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert AR.caption(m, 1) == "تقع نجمة صفراء كبيرة فوق ثلاثة مثلثات سوداء صغيرة."
    assert AR.caption(m, 2) == "تقع ثلاثة مثلثات سوداء صغيرة تحت نجمة صفراء كبيرة."
    m = Meaning(Group(3, "small", "black", "square"), "left_of", Group(1, "small", "green", "circle"))
    assert AR.caption(m, 1) == "تقع ثلاثة مربعات سوداء صغيرة على يسار دائرة خضراء صغيرة."
    assert AR.caption(m, 3) == "توجد ثلاثة مربعات سوداء صغيرة على يسار دائرة خضراء صغيرة."


def test_arabic_feminine_three_and_masculine_dual_genitive():
    m = Meaning(Group(3, "big", "green", "circle"), "right_of", Group(2, "small", "white", "triangle"))
    assert AR.caption(m, 0) == "ثلاث دوائر خضراء كبيرة على يمين مثلثين أبيضين صغيرين"
    assert AR.caption(m, 1) == "تقع ثلاث دوائر خضراء كبيرة على يمين مثلثين أبيضين صغيرين."
    assert AR.caption(m, 3) == "توجد ثلاث دوائر خضراء كبيرة على يمين مثلثين أبيضين صغيرين."


def test_arabic_duals_of_both_genders():
    m = Meaning(Group(2, "big", "blue", "square"), "below", Group(2, "small", "yellow", "star"))
    assert AR.caption(m, 1) == "يقع مربعان أزرقان كبيران تحت نجمتين صفراوين صغيرتين."
    assert AR.caption(m, 2) == "تقع نجمتان صفراوان صغيرتان فوق مربعين أزرقين كبيرين."
    m = Meaning(Group(2, "big", "green", "triangle"), "above", Group(1, "small", "red", "circle"))
    assert AR.caption(m, 1) == "يقع مثلثان أخضران كبيران فوق دائرة حمراء صغيرة."
    assert AR.caption(m, 2) == "تقع دائرة حمراء صغيرة تحت مثلثين أخضرين كبيرين."


def test_arabic_singulars_and_plural_objects():
    m = Meaning(Group(1, "small", "white", "triangle"), "below", Group(3, "big", "red", "star"))
    assert AR.caption(m, 0) == "مثلث أبيض صغير تحت ثلاث نجوم حمراء كبيرة"
    assert AR.caption(m, 3) == "يوجد مثلث أبيض صغير تحت ثلاث نجوم حمراء كبيرة."
    m = Meaning(Group(2, "small", "black", "star"), "left_of", Group(3, "big", "white", "square"))
    assert AR.caption(m, 1) == "تقع نجمتان سوداوان صغيرتان على يسار ثلاثة مربعات بيضاء كبيرة."
    m = Meaning(Group(1, "small", "blue", "circle"), "right_of", Group(1, "big", "black", "star"))
    assert AR.caption(m, 1) == "تقع دائرة زرقاء صغيرة على يمين نجمة سوداء كبيرة."


def test_arabic_bad_template():
    with pytest.raises(ValueError):
        AR.caption(M, 4)
