"""Generation metrics against values computed by hand on tiny corpora (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys

import pytest

from dist_train.eval import generation_metrics as gm

HAS_JAVA = gm.java_executable() is not None
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="METEOR 1.5 is a Java program and there is no `java` on PATH")


# ---------------------------------------------------------------------------------------------
# tokenisation


@pytest.mark.parametrize("text, lang, expected", [
    ("A man, riding a HORSE.", "en", "a man riding a horse"),
    # quotes, brackets, dashes and sentence punctuation go; % & # @ and symbols stay as tokens
    ('"Rex" (the dog) runs -- fast!!! 50% & $5 + 3 = 8', "en", "rex the dog runs fast 50 % & $ 5 + 3 = 8"),
    # word-internal apostrophes and hyphens stay, number separators only between digits
    ("Don't stop: a black-and-white cat, 3.5 km at 10:30, 1,000 times.", "en",
     "don't stop a black-and-white cat 3.5 km at 10:30 1,000 times"),
    ("dogs' U.S. 'quoted'", "en", "dogs u s quoted"),
    ("L'homme — très heureux — mange. ¿Qué? ¡Sí!", "fr", "l'homme très heureux mange qué sí"),
    ("Straße ÄÖÜ", "de", "straße äöü"),
    ("ISTANBUL'da İyi", "tr", "ıstanbul'da iyi"),  # Turkish dotted/dotless i
    ("नमस्ते दुनिया।", "hi", "नमस्ते दुनिया"),  # combining vowel signs stay in the word, the danda goes
    ("一只猫坐在垫子上。Hello World 2020年", "zh", "一 只 猫 坐 在 垫 子 上 hello world 2020 年"),
    ("猫がマットの上に座っている。", "ja-JP", "猫 が マ ッ ト の 上 に 座 っ て い る"),
    ("  spaced\tout\nlines  ", "en", "spaced out lines"),
    ("...", "en", ""),
])
def test_tokenize(text, lang, expected):
    assert gm.tokenize(text, lang) == expected


def test_tokenize_nfc_and_invisible_characters():
    # "é" as e + combining acute (NFD) becomes the one code point of NFC; a soft hyphen is dropped, a zero-width
    # space separates, ZWNJ inside a word is kept
    assert gm.tokenize("cafe\u0301 so\u00adft foo\u200bbar mi\u200cxed", "en") == "caf\u00e9 soft foo bar mi\u200cxed"
    assert gm.tokenize("❤\ufe0f", "en") == "❤"  # the variation selector has no word to belong to


# ---------------------------------------------------------------------------------------------
# BLEU-4 (pycocoevalcap): corpus-level, closest reference length, tiny/small constants 1e-15/1e-9


def test_bleu4_exact_match_is_one():
    assert gm.bleu4(["a man rides a horse"], [["a man rides a horse"]]) == pytest.approx(1.0, abs=1e-6)
    # punctuation and case are gone after `tokenize`
    assert gm.bleu4(["A man, rides a horse."], [["a man rides a horse"]]) == pytest.approx(1.0, abs=1e-6)


def test_bleu4_by_hand_with_brevity_penalty():
    hyp = "the cat sat on the mat"            # 6 words
    ref = "the cat sat on a red mat today"    # 8 words
    # 1-grams: the x2 (clipped to 1), cat, sat, on, mat     -> 5/6
    # 2-grams: the cat, cat sat, sat on | on the, the mat  -> 3/5
    # 3-grams: the cat sat, cat sat on | sat on the, on the mat -> 2/4
    # 4-grams: the cat sat on | cat sat on the, sat on the mat  -> 1/3
    # geometric mean (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25; BP = exp(1 - 8/6)
    expected = (1 / 12) ** 0.25 * math.exp(1 - 8 / 6)
    assert expected == pytest.approx(0.384982, abs=1e-6)
    assert gm.bleu4([hyp], [[ref]]) == pytest.approx(expected, rel=1e-6)


def test_bleu4_is_corpus_level_with_closest_reference_length():
    # segment 1: "a b c d" = its reference: 4/4, 3/3, 2/2, 1/1; reference length 4
    # segment 2: "e f g" against "e f g h" (distance 1) and "e" (distance 2): closest length 4;
    #            3/3, 2/2, 1/1 and no 4-gram at all (0 guesses), which alone would make its BLEU-4 ~0
    # pooled: 7/7, 5/5, 3/3, 1/1 -> precision 1; hypothesis 4 + 3 = 7 words, reference 4 + 4 = 8: BP exp(1 - 8/7)
    # ("shortest" would take 4 + 1 = 5 and "average" 4 + 2.5: no penalty, BLEU 1)
    hyps = ["a b c d", "e f g"]
    refs = [["a b c d"], ["e f g h", "e"]]
    assert gm.bleu4(hyps, refs) == pytest.approx(math.exp(1 - 8 / 7), rel=1e-6)
    # a tie in distance goes to the shorter reference: "a b c d" against lengths 6 and 2 (both 2 away) -> 2, no BP
    assert gm.bleu4(["a b c d"], [["a b c d e f", "a b"]]) == pytest.approx(1.0, abs=1e-6)


def test_bleu4_short_hypothesis_gets_the_tiny_over_small_4gram_precision():
    # 3 words, no 4-gram: its precision is (0 + 1e-15) / (0 + 1e-9) = 1e-6, the others 1 -> (1e-6) ** (1/4)
    assert gm.bleu4(["a b c"], [["a b c"]]) == pytest.approx(1e-6 ** 0.25, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# ROUGE-L (pycocoevalcap): beta 1.2, best precision and best recall over the references, mean over segments

BETA2 = 1.2 ** 2


def f_lcs(p: float, r: float) -> float:
    return (1 + BETA2) * p * r / (r + BETA2 * p)


def test_rouge_l_by_hand():
    # LCS of "the cat sat on the mat" (6) and "the cat is on the mat today" (7): the cat _ on the mat = 5
    # P = 5/6, R = 5/7, F = 2.44 * P * R / (R + 1.44 * P) = 0.758706
    expected = f_lcs(5 / 6, 5 / 7)
    assert expected == pytest.approx(0.758706, abs=1e-6)
    assert gm.rouge_l(["the cat sat on the mat"], [["the cat is on the mat today"]]) == pytest.approx(expected)
    assert gm.rouge_l(["a man rides a horse"], [["a man rides a horse"]]) == pytest.approx(1.0)
    assert gm.rouge_l(["x y"], [["a b"]]) == 0.0


def test_rouge_l_maximises_precision_and_recall_separately_and_averages_segments():
    # "a b c d" vs "a b": LCS 2, P 2/4, R 2/2 = 1; vs "a b c d e f g h": LCS 4, P 4/4 = 1, R 4/8
    # max P = 1 and max R = 1 come from different references, and F(1, 1) = 1
    assert gm.rouge_l(["a b c d"], [["a b", "a b c d e f g h"]]) == pytest.approx(1.0)
    # a second segment with F(5/6, 5/7): the corpus value is the plain mean of the two
    hyps = ["a b c d", "the cat sat on the mat"]
    refs = [["a b", "a b c d e f g h"], ["the cat is on the mat today"]]
    assert gm.rouge_l(hyps, refs) == pytest.approx((1.0 + f_lcs(5 / 6, 5 / 7)) / 2)


def test_rouge_l_empty_hypothesis_scores_zero():
    assert gm.rouge_l(["..."], [["a b"]]) == 0.0


# ---------------------------------------------------------------------------------------------
# CIDEr (pycocoevalcap's CIDEr-D): idf from the corpus' references, ref_len = log(segments)


def test_cider_exact_match_of_a_corpus_without_shared_ngrams_is_ten():
    # 2 images, one reference each, no n-gram shared: every df = 1, weight = tf * (log 2 - log 1) = log 2 = L.
    # hypothesis = reference: cosine 1 for n = 1..4, same length (no Gaussian penalty), mean 1, times 10 -> 10
    assert gm.cider(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]]) == pytest.approx(10.0)
    # three words: no 4-gram, so that n contributes 0: mean (1 + 1 + 1 + 0) / 4 = 0.75 -> 7.5 for both images
    assert gm.cider(["a b c", "e f g"], [["a b c"], ["e f g"]]) == pytest.approx(7.5)


def test_cider_by_hand_partial_match():
    # image 1 exact (10, as above); image 2: "e f g x" against "e f g h", all weights L (x has df 0 -> log 1 = 0)
    #   1-grams: hyp {e f g x}, ref {e f g h}: 3 L^2 / (2L * 2L) = 3/4
    #   2-grams: {ef fg gx} / {ef fg gh}: 2/3;  3-grams: {efg fgx} / {efg fgh}: 1/2;  4-grams: {efgx} / {efgh}: 0
    #   same length: no penalty; 10 * (3/4 + 2/3 + 1/2 + 0) / 4 = 4.791667
    image2 = 10 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4
    assert gm.cider(["a b c d", "e f g x"], [["a b c d"], ["e f g h"]]) == pytest.approx((10 + image2) / 2)


def test_cider_by_hand_length_penalty():
    # image 2: "e f g" against "e f g h"
    #   1-grams: 3 L^2 / (sqrt(3) L * 2 L) = 3 / (2 sqrt 3);  2-grams: 2 / (sqrt 2 * sqrt 3);  3-grams: 1 / sqrt 2;
    #   4-grams: none in the hypothesis -> 0
    #   pycocoevalcap's length is the bigram count: 2 vs 3, delta -1 -> exp(-1 / (2 * 6^2)) = exp(-1/72)
    image2 = 10 * (3 / (2 * math.sqrt(3)) + 2 / math.sqrt(6) + 1 / math.sqrt(2) + 0) / 4 * math.exp(-1 / 72)
    assert image2 == pytest.approx(5.891670, abs=1e-5)
    assert gm.cider(["a b c d", "e f g"], [["a b c d"], ["e f g h"]]) == pytest.approx((10 + image2) / 2)


def test_cider_depends_on_the_corpus():
    # one image: log(1) = 0 weighs every n-gram 0
    assert gm.cider(["a b c d"], [["a b c d"]]) == 0.0
    # an n-gram in every image's references has idf log 2 - log 2 = 0: "a" and "b" carry no weight
    hyps, refs = ["a b", "a b"], [["a b c d"], ["a b e f"]]
    assert gm.cider(hyps, refs) < gm.cider(["c d", "e f"], refs)
    # ordering: a closer hypothesis scores higher
    refs = [["a man rides a horse"], ["two dogs play in the snow"]]
    good = gm.cider(["a man rides a horse", "two dogs play in snow"], refs)
    bad = gm.cider(["a man", "dogs"], refs)
    assert 0 < bad < good < 10


# ---------------------------------------------------------------------------------------------
# sacreBLEU


def test_sacrebleu_by_hand_and_signature():
    # the same counts as test_bleu4_by_hand_with_brevity_penalty (13a changes nothing here), on 0..100
    score, signature = gm.sacre_bleu(["the cat sat on the mat"], [["the cat sat on a red mat today"]], "en")
    assert score == pytest.approx(100 * (1 / 12) ** 0.25 * math.exp(1 - 8 / 6), rel=1e-6)
    assert "nrefs:1" in signature and "tok:13a" in signature and "case:mixed" in signature
    assert gm.sacre_bleu(["a man rides a horse"], [["a man rides a horse"]], "en")[0] == pytest.approx(100.0)


def test_sacrebleu_is_case_sensitive_on_raw_text():
    hyp, ref = ["A man rides a horse ."], [["a man rides a horse"]]
    assert gm.bleu4(hyp, ref) == pytest.approx(1.0, abs=1e-6)  # tokenised and lowercased
    assert gm.sacre_bleu(hyp, ref, "en")[0] < 100.0


def test_sacrebleu_varying_reference_counts_pad_with_none():
    # segment 1: "a b" against "a b c d": 2/2, 1/1, no 3- or 4-grams; reference length 4
    # segment 2: "e f g h" against "e f g h" and "e f": 4/4, 3/3, 2/2, 1/1; closest length 4
    # pooled precisions 6/6, 4/4, 2/2, 1/1; 6 words against 8: BP exp(1 - 8/6) -> 71.653.
    # (Padding segment 1 with "" instead of None would give it a reference of length 0, closest to 2 as
    # much as 4 and shorter, hence no BP: 100, and "nrefs:2".)
    score, signature = gm.sacre_bleu(["a b", "e f g h"], [["a b c d"], ["e f g h", "e f"]], "en")
    assert score == pytest.approx(100 * math.exp(1 - 8 / 6), rel=1e-6)
    assert "nrefs:var" in signature
    # pycocoevalcap's BLEU-4 of the same corpus: the same lengths and counts
    assert gm.bleu4(["a b", "e f g h"], [["a b c d"], ["e f g h", "e f"]]) == pytest.approx(math.exp(1 - 8 / 6),
                                                                                             rel=1e-6)


def test_sacrebleu_tokenizer_by_language():
    assert gm.sacrebleu_tokenizer("en") == "13a"
    assert gm.sacrebleu_tokenizer("de-DE") == "13a"
    assert gm.sacrebleu_tokenizer("zh") == "zh"
    assert gm.sacrebleu_tokenizer("ja") in ("ja-mecab", "char")  # ja-mecab only with MeCab and ipadic
    score, signature = gm.sacre_bleu(["一只猫坐在垫子上。"], [["一只猫坐在垫子上。"]], "zh")
    assert score == pytest.approx(100.0) and "tok:zh" in signature
    _, signature = gm.sacre_bleu(["a b c d"], [["a b c d"]], "en", tokenizer="intl")
    assert "tok:intl" in signature


# ---------------------------------------------------------------------------------------------
# METEOR 1.5


def test_meteor_arguments_per_language(tmp_path, monkeypatch):
    real = gm.meteor_jar()
    assert (real.parent / "data" / "paraphrase-en.gz").is_file()
    assert gm.meteor_modules("en") == "meteor-1.5 -l en -norm -m exact stem synonym paraphrase"
    assert gm.meteor_arguments("cs") == ["-l", "cz", "-norm", "-m", "exact"]
    assert gm.meteor_arguments("it") == ["-l", "it", "-lower", "-m", "exact stem"]
    assert gm.meteor_arguments("sv") == ["-l", "se", "-lower", "-m", "exact stem"]
    assert gm.meteor_arguments("zh") == ["-l", "other", "-lower", "-m", "exact"]
    # German paraphrases are used once the table is there (pycocoevalcap ships only the English one)
    if not (real.parent / "data" / "paraphrase-de.gz").is_file():
        assert gm.meteor_modules("de") == "meteor-1.5 -l de -norm -m exact stem"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "paraphrase-de.gz").write_bytes(b"")
    monkeypatch.setattr(gm, "meteor_jar", lambda: tmp_path / "meteor-1.5.jar")
    assert gm.meteor_modules("de") == "meteor-1.5 -l de -norm -m exact stem paraphrase"
    assert gm.meteor_modules("en") == "meteor-1.5 -l en -norm -m exact stem synonym"


def test_meteor_without_java_is_none_and_the_scores_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gm.java_executable() is None
    assert gm.meteor(["a b"], [["a b"]], "en") is None
    scores = gm.generation_scores(["a b c d"], [["a b c d"]], "en")
    assert scores["meteor"] is None and scores["meteor_modules"].startswith("not computed:")
    assert "java" in scores["meteor_modules"]
    with pytest.raises(RuntimeError, match="java"):
        gm.MeteorScorer("en")


@pytest.fixture(scope="module")
def meteor_en():
    if not HAS_JAVA:
        pytest.skip("METEOR 1.5 is a Java program and there is no `java` on PATH")
    with gm.MeteorScorer("en") as scorer:  # loads the English paraphrase table: ~10 s
        yield scorer
    assert scorer._proc.returncode is not None


@pytest.fixture(scope="module")
def meteor_plain():
    """Swahili is not a language of the jar: -l other -m exact, no function words, alpha 0.75, beta 1.4,
    gamma 0.7 -- small enough to compute by hand."""
    if not HAS_JAVA:
        pytest.skip("METEOR 1.5 is a Java program and there is no `java` on PATH")
    with gm.MeteorScorer("sw") as scorer:
        yield scorer


def meteor_by_hand(matches: int, hyp_len: int, ref_len: int, chunks: int, exact: bool = False) -> float:
    p, r = matches / hyp_len, matches / ref_len
    fmean = p * r / (0.75 * p + 0.25 * r)
    frag = 0.0 if exact else chunks / matches
    return fmean * (1 - 0.7 * frag ** 1.4)


@needs_java
def test_meteor_by_hand(meteor_plain):
    assert meteor_plain.modules == "meteor-1.5 -l other -lower -m exact"
    # "a b c d" vs "a b c d e f": 4 matches in one chunk, P 1, R 4/6; Fmean = P R / (0.75 P + 0.25 R) = 0.727273
    # penalty 0.7 * (1/4) ** 1.4 = 0.100511 -> 0.654174
    assert meteor_plain.score(["a b c d"], [["a b c d e f"]]) == pytest.approx(meteor_by_hand(4, 4, 6, 1), rel=1e-9)
    assert meteor_by_hand(4, 4, 6, 1) == pytest.approx(0.654174, abs=1e-6)
    # "c d a b" vs "a b c d": P = R = 1 but 2 chunks: 1 - 0.7 * (2/4) ** 1.4 = 0.734750
    assert meteor_plain.score(["c d a b"], [["a b c d"]]) == pytest.approx(meteor_by_hand(4, 4, 4, 2), rel=1e-9)
    # an exact match has no fragmentation penalty in METEOR 1.5: 1.0
    assert meteor_plain.score(["a b c d"], [["a b c d"]]) == pytest.approx(1.0)
    assert meteor_plain.score(["x"], [["y"]]) == 0.0
    assert meteor_plain.score(["..."], [["a b"]]) == 0.0  # empty after tokenisation


@needs_java
def test_meteor_is_corpus_level(meteor_plain):
    # the jar sums the segments' statistics: P = R = 4/5 and the exact segment's chunk is not counted, so no
    # penalty: 0.8 (the mean of the segment scores would be (1 + 0) / 2 = 0.5)
    assert meteor_plain.score(["a b c d", "x"], [["a b c d"], ["y"]]) == pytest.approx(0.8)
    # varying reference counts: the best reference of each segment counts ("x" matches its second one)
    assert meteor_plain.score(["a b c d", "x"], [["a b c d"], ["y", "x"]]) == pytest.approx(1.0)


@needs_java
def test_meteor_english(meteor_en):
    assert meteor_en.modules == gm.meteor_modules("en")
    exact = meteor_en.score(["a man rides a horse"], [["a man rides a horse"]])
    assert exact == pytest.approx(1.0)
    refs = [["a man is riding a horse on the beach", "a person rides a horse"], ["two dogs play in the snow"]]
    good = meteor_en.score(["a man riding a horse on a beach", "two dogs playing in snow"], refs)
    bad = meteor_en.score(["a cat on a sofa", "a red car"], refs)
    assert 0 <= bad < good < 1
    # stems match what exact matching alone would not
    assert meteor_en.score(["the dogs running"], [["the dog runs"]]) > meteor_en.score(["the cats sleeping"],
                                                                                       [["the dog runs"]])


@needs_java
def test_meteor_german_stems_and_cleanup():
    with gm.MeteorScorer("de") as scorer:
        assert scorer.modules == gm.meteor_modules("de")
        assert scorer.score(["die katze sitzt"], [["die katze sitzt"]]) == pytest.approx(1.0)
        stemmed = scorer.score(["die katzen sitzen"], [["die katze sitzt"]])
        proc = scorer._proc
    assert proc.returncode is not None and scorer.closed
    with gm.MeteorScorer("sw") as plain:  # exact matching alone matches only "die"
        assert plain.score(["die katzen sitzen"], [["die katze sitzt"]]) < stemmed
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], [["a"]])


@needs_java
def test_meteor_function_starts_and_stops_its_jar():
    assert gm.meteor(["ein mann reitet"], [["ein mann reitet"]], "de") == pytest.approx(1.0)


def _fake_java(tmp_path, body: str) -> str:
    path = tmp_path / "java"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.skipif(os.name != "posix", reason="the fake java is a shell script")
def test_meteor_jar_that_dies_or_hangs_is_an_error_not_a_hang(tmp_path):
    dying = _fake_java(tmp_path, "echo 'Exception in thread main: boom' >&2; exit 3")
    scorer = gm.MeteorScorer("de", java=dying, timeout=10)
    with pytest.raises(RuntimeError, match=r"exited \(exit status 3\): Exception in thread main: boom"):
        scorer.score(["a"], [["a"]])
    assert scorer.closed
    hanging = _fake_java(tmp_path, "exec sleep 60")
    scorer = gm.MeteorScorer("de", java=hanging, timeout=0.5)
    with pytest.raises(RuntimeError, match="no answer for"):
        scorer.score(["a"], [["a"]])
    assert scorer._proc.returncode is not None  # killed
    talking = _fake_java(tmp_path, "read line; echo 'Warning: something'; sleep 60")
    scorer = gm.MeteorScorer("de", java=talking, timeout=10)
    with pytest.raises(RuntimeError, match="instead of match statistics"):
        scorer.score(["a"], [["a"]])
    assert scorer._proc.returncode is not None


@pytest.mark.skipif(os.name != "posix", reason="the fake java is a shell script")
def test_generation_scores_survive_a_failing_jar(tmp_path, monkeypatch):
    monkeypatch.setattr(gm, "java_executable", lambda: _fake_java(tmp_path, "echo 'Error: broken' >&2; exit 1"))
    scores = gm.generation_scores(["a b c d"], [["a b c d"]], "de")
    assert scores["meteor"] is None and scores["meteor_modules"].startswith("not computed: METEOR")
    assert "Error: broken" in scores["meteor_modules"] and scores["sacrebleu"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------------
# the one call, and validation


def test_generation_scores_keys_and_values(meteor_en):
    hyps = ["a man rides a horse", "two dogs play in the snow"]
    refs = [["a man rides a horse", "a person on a horse"], ["two dogs play in the snow"]]
    scores = gm.generation_scores(hyps, refs, "en", meteor_scorer=meteor_en)
    assert set(scores) == {"bleu4", "rouge_l", "cider", "sacrebleu", "sacrebleu_signature", "meteor",
                           "meteor_modules", "n"}
    assert scores["n"] == 2
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6) and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["sacrebleu"] == pytest.approx(100.0) and "nrefs:var" in scores["sacrebleu_signature"]
    assert scores["meteor"] == pytest.approx(1.0) and scores["meteor_modules"] == gm.meteor_modules("en")
    assert scores["cider"] > 0
    skipped = gm.generation_scores(hyps, refs, "en", meteor=False)
    assert skipped["meteor"] is None and skipped["meteor_modules"].startswith("not computed:")
    assert {k: v for k, v in skipped.items() if not k.startswith("meteor")} == \
        {k: v for k, v in scores.items() if not k.startswith("meteor")}
    with pytest.raises(ValueError, match="scorer is for"):
        gm.generation_scores(hyps, refs, "de", meteor_scorer=meteor_en)


def _metrics():
    return [gm.bleu4, gm.rouge_l, gm.cider, gm.sacre_bleu, gm.meteor,
            lambda h, r: gm.generation_scores(h, r, "en", meteor=False)]


@pytest.mark.parametrize("hyps, refs, message", [
    ([], [], "no hypotheses"),
    (["a", "b"], [["a"]], "2 hypotheses but 1 reference lists"),
    (["a"], [[]], "hypothesis 0 has no reference"),
    (["a"], ["a"], r"references\[0\] must be a list"),
    (["a", "b"], [["a"], ["  "]], "hypothesis 1 has a blank reference"),
    ([None], [["a"]], "hypothesis 0 is a NoneType"),
    (["a"], [[3]], "a reference of hypothesis 0 is a int"),
    ("a b", [["a b"]], "hypotheses must be a list"),
])
def test_validation(hyps, refs, message):
    for metric in _metrics():
        with pytest.raises(ValueError, match=message) as info:
            metric(hyps, refs)
        assert "\n" not in str(info.value)


def test_language_must_be_given():
    with pytest.raises(ValueError, match="language code"):
        gm.tokenize("a", "")


def test_import_is_light():
    code = ("import sys, dist_train.eval.generation_metrics; "
            "print(any(m.split('.')[0] in ('sacrebleu', 'pycocoevalcap') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
