import unicodedata

import pytest

from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

HI = get_captioner("hi")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_hindi_templates():
    assert HI.caption(M, 0) == "एक बड़े नीले वर्ग के बाईं ओर स्थित दो छोटे लाल वृत्त"
    assert HI.caption(M, 1) == "दो छोटे लाल वृत्त एक बड़े नीले वर्ग के बाईं ओर हैं।"
    assert HI.caption(M, 2) == "एक बड़ा नीला वर्ग दो छोटे लाल वृत्तों के दाईं ओर है।"
    assert HI.caption(M, 3) == "एक बड़े नीले वर्ग के बाईं ओर दो छोटे लाल वृत्त हैं।"


def test_hindi_marked_noun_tara_in_all_four_forms():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert HI.caption(m, 1) == "एक बड़ा पीला तारा तीन छोटे काले त्रिभुजों के ऊपर है।"
    assert HI.caption(m, 2) == "तीन छोटे काले त्रिभुज एक बड़े पीले तारे के नीचे हैं।"
    assert HI.caption(m, 3) == "तीन छोटे काले त्रिभुजों के ऊपर एक बड़ा पीला तारा है।"
    m = Meaning(Group(1, "small", "black", "triangle"), "below", Group(2, "big", "red", "star"))
    assert HI.caption(m, 1) == "एक छोटा काला त्रिभुज दो बड़े लाल तारों के नीचे है।"
    assert HI.caption(m, 2) == "दो बड़े लाल तारे एक छोटे काले त्रिभुज के ऊपर हैं।"


def test_hindi_invariable_adjectives_and_nukta():
    m = Meaning(Group(2, "big", "white", "star"), "right_of", Group(1, "small", "green", "circle"))
    assert HI.caption(m, 0) == "एक छोटे हरे वृत्त के दाईं ओर स्थित दो बड़े सफ़ेद तारे"
    assert HI.caption(m, 1) == "दो बड़े सफ़ेद तारे एक छोटे हरे वृत्त के दाईं ओर हैं।"
    assert unicodedata.normalize("NFC", HI.caption(m, 1)) == HI.caption(m, 1)
    m = Meaning(Group(1, "big", "white", "circle"), "right_of", Group(3, "small", "blue", "square"))
    assert HI.caption(m, 0) == "तीन छोटे नीले वर्गों के दाईं ओर स्थित एक बड़ा सफ़ेद वृत्त"
    assert HI.caption(m, 3) == "तीन छोटे नीले वर्गों के दाईं ओर एक बड़ा सफ़ेद वृत्त है।"


def test_hindi_more_relations():
    m = Meaning(Group(3, "small", "green", "square"), "left_of", Group(3, "big", "yellow", "star"))
    assert HI.caption(m, 1) == "तीन छोटे हरे वर्ग तीन बड़े पीले तारों के बाईं ओर हैं।"
    m = Meaning(Group(1, "small", "red", "star"), "above", Group(1, "big", "black", "square"))
    assert HI.caption(m, 1) == "एक छोटा लाल तारा एक बड़े काले वर्ग के ऊपर है।"
    m = Meaning(Group(2, "small", "yellow", "triangle"), "below", Group(1, "big", "green", "star"))
    assert HI.caption(m, 1) == "दो छोटे पीले त्रिभुज एक बड़े हरे तारे के नीचे हैं।"


def test_hindi_bad_template():
    with pytest.raises(ValueError):
        HI.caption(M, 4)
