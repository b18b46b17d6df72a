from dist_train.data.world.languages import get_captioner
from dist_train.data.world.meaning import Group, Meaning

EL = get_captioner("el")
M = Meaning(Group(2, "small", "red", "circle"), "left_of", Group(1, "big", "blue", "square"))


def test_greek_templates():
    assert EL.caption(M, 0) == "δύο μικροί κόκκινοι κύκλοι αριστερά από ένα μεγάλο μπλε τετράγωνο"
    assert EL.caption(M, 1) == "Δύο μικροί κόκκινοι κύκλοι είναι αριστερά από ένα μεγάλο μπλε τετράγωνο."
    assert EL.caption(M, 2) == "Ένα μεγάλο μπλε τετράγωνο είναι δεξιά από δύο μικρούς κόκκινους κύκλους."
    assert EL.caption(M, 3) == "Υπάρχουν δύο μικροί κόκκινοι κύκλοι αριστερά από ένα μεγάλο μπλε τετράγωνο."


def test_greek_neuter_singular_and_three_neuter():
    m = Meaning(Group(1, "big", "yellow", "star"), "above", Group(3, "small", "black", "triangle"))
    assert EL.caption(m, 0) == "ένα μεγάλο κίτρινο αστέρι πάνω από τρία μικρά μαύρα τρίγωνα"
    assert EL.caption(m, 1) == "Ένα μεγάλο κίτρινο αστέρι είναι πάνω από τρία μικρά μαύρα τρίγωνα."
    assert EL.caption(m, 2) == "Τρία μικρά μαύρα τρίγωνα είναι κάτω από ένα μεγάλο κίτρινο αστέρι."
    assert EL.caption(m, 3) == "Υπάρχει ένα μεγάλο κίτρινο αστέρι πάνω από τρία μικρά μαύρα τρίγωνα."


def test_greek_masculine_singular_nominative_and_accusative():
    m = Meaning(Group(1, "small", "white", "triangle"), "below", Group(1, "big", "green", "circle"))
    assert EL.caption(m, 1) == "Ένα μικρό άσπρο τρίγωνο είναι κάτω από έναν μεγάλο πράσινο κύκλο."
    assert EL.caption(m, 2) == "Ένας μεγάλος πράσινος κύκλος είναι πάνω από ένα μικρό άσπρο τρίγωνο."
    assert EL.caption(m, 3) == "Υπάρχει ένα μικρό άσπρο τρίγωνο κάτω από έναν μεγάλο πράσινο κύκλο."


def test_greek_three_masculine_and_neuter():
    m = Meaning(Group(3, "big", "blue", "triangle"), "right_of", Group(3, "small", "red", "circle"))
    assert EL.caption(m, 1) == "Τρία μεγάλα μπλε τρίγωνα είναι δεξιά από τρεις μικρούς κόκκινους κύκλους."
    assert EL.caption(m, 2) == "Τρεις μικροί κόκκινοι κύκλοι είναι αριστερά από τρία μεγάλα μπλε τρίγωνα."


def test_greek_masculine_subject_neuter_plural_object():
    m = Meaning(Group(1, "small", "green", "circle"), "left_of", Group(2, "big", "white", "star"))
    assert EL.caption(m, 0) == "ένας μικρός πράσινος κύκλος αριστερά από δύο μεγάλα άσπρα αστέρια"
    assert EL.caption(m, 2) == "Δύο μεγάλα άσπρα αστέρια είναι δεξιά από έναν μικρό πράσινο κύκλο."
    assert EL.caption(m, 3) == "Υπάρχει ένας μικρός πράσινος κύκλος αριστερά από δύο μεγάλα άσπρα αστέρια."


def test_greek_plural_below():
    m = Meaning(Group(2, "big", "black", "square"), "below", Group(2, "small", "blue", "star"))
    assert EL.caption(m, 1) == "Δύο μεγάλα μαύρα τετράγωνα είναι κάτω από δύο μικρά μπλε αστέρια."
    assert EL.caption(m, 3) == "Υπάρχουν δύο μεγάλα μαύρα τετράγωνα κάτω από δύο μικρά μπλε αστέρια."
