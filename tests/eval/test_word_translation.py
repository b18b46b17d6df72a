"""tf-idf ground truth and word-translation recall against brute force; alignment helps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import special_ortho_group

from dist_train.eval.word_translation import (WordTable, ground_truth_pairs, tfidf_translation_pairs,
                                              word_translation, word_translation_recall)

from . import reference

# a toy parallel corpus: "en" word w{i} is W{i} in "xx", numbers are spelled the same in both, and
# every sentence has a function word and a full stop. The vocabulary must be large against the
# sentence length: a token that co-occurs with every token of the other language has idf 0.
LEXICON = {**{f"w{i}": f"W{i}" for i in range(40)}, "3": "3", "7": "7"}


def toy_corpus(seed: int, sentences: int = 150):
    rng = np.random.default_rng(seed)
    words = list(LEXICON)
    en, xx = [], []
    for _ in range(sentences):
        chosen = [str(w) for w in rng.choice(words, size=rng.integers(2, 5), replace=False)]
        en.append(["the", *chosen, "."])
        xx_words = [LEXICON[w] for w in chosen]
        rng.shuffle(xx_words)
        xx.append(["DER", *xx_words, "."])
    return en, xx


def random_corpus(seed: int, sentences: int = 40, vocab: int = 12):
    """Unrelated random token ids with repeats, so ties and repeated tokens are exercised."""
    rng = np.random.default_rng(seed)
    a = [list(rng.integers(0, vocab, size=rng.integers(1, 7))) for _ in range(sentences)]
    b = [list(rng.integers(100, 100 + vocab, size=rng.integers(1, 7))) for _ in range(sentences)]
    return [[int(t) for t in s] for s in a], [[int(t) for t in s] for s in b]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tfidf_pairs_match_brute_force_on_random_corpora(seed):
    a, b = random_corpus(seed)
    ours = tfidf_translation_pairs(a, b)
    assert ours == reference.tfidf_pairs(a, b)
    assert ours  # something was matched


def test_tfidf_pairs_find_the_lexicon():
    en, xx = toy_corpus(0)
    pairs = set(tfidf_translation_pairs(en, xx))
    assert pairs == reference_set(en, xx)
    lexicon_pairs = set(LEXICON.items())
    assert len(pairs & lexicon_pairs) >= 0.9 * len(LEXICON)  # mutual top 5 also admits looser pairs
    # a token present in every document of the other side has idf 0 and never matches
    assert not any(b == "." for _, b in pairs) and not any(a == "." for a, _ in pairs)


def reference_set(a, b):
    return set(reference.tfidf_pairs(a, b))


def test_ground_truth_pairs_align_sentences_by_group():
    en, xx = toy_corpus(1, sentences=40)
    # interleave the two languages, shuffled, with group ids tying translations together
    rows = [(s, f"g{i}", "en") for i, s in enumerate(en)] + [(s, f"g{i}", "xx") for i, s in enumerate(xx)]
    order = np.random.default_rng(0).permutation(len(rows))
    tokens, groups, langs = zip(*[rows[i] for i in order])
    got = ground_truth_pairs(list(tokens), list(groups), list(langs))
    assert list(got) == [("en", "xx")]
    assert got[("en", "xx")] == tfidf_translation_pairs(en, xx)


def embedding_tables(seed: int, dim: int = 24, rotation_angle: float = 0.0, noise: float = 0.05):
    """en words are random vectors; xx words are the same vectors (shared tokens identical),
    rotated by a small random rotation and jittered."""
    rng = np.random.default_rng(seed)
    en_tokens = ["the", "."] + list(LEXICON) + [f"en{i}" for i in range(20)]
    xx_tokens = ["DER", "."] + list(LEXICON.values()) + [f"xx{i}" for i in range(20)]
    en = rng.normal(size=(len(en_tokens), dim))
    xx = en.copy()
    if rotation_angle:
        generator = rng.normal(size=(dim, dim))
        skew = (generator - generator.T) / 2
        from scipy.linalg import expm

        xx = xx @ expm(rotation_angle * skew / np.linalg.norm(skew, 2))
    xx = xx + noise * rng.normal(size=xx.shape)
    # tokens shared by both languages have one embedding (shared vocabulary)
    for shared in ("3", "7", "."):
        if shared in en_tokens:
            xx[xx_tokens.index(shared)] = en[en_tokens.index(shared)]
    return {"en": WordTable(en_tokens, en), "xx": WordTable(xx_tokens, xx)}


def test_word_recall_matches_brute_force_in_both_directions():
    tables = embedding_tables(0, noise=1.2)
    gt = sorted(LEXICON.items()) + [("the", "DER"), ("w1", "W2")]
    result = word_translation_recall(tables, {("en", "xx"): gt}, k=3, chunk_size=4)
    en, xx = tables["en"], tables["xx"]
    forward = reference.word_recall(list(en.tokens), en.embeddings, list(xx.tokens), xx.embeddings, gt, k=3)
    backward = reference.word_recall(list(xx.tokens), xx.embeddings, list(en.tokens), en.embeddings,
                                     [(b, a) for a, b in gt], k=3)
    i, j = result.languages.index("en"), result.languages.index("xx")
    assert result.recall[i, j] == pytest.approx(forward)
    assert result.recall[j, i] == pytest.approx(backward)
    different = [(a, b) for a, b in gt if a != b]
    assert result.num_pairs_different[i, j] == len(different) == len(gt) - 2
    assert result.recall_different[i, j] == pytest.approx(
        reference.word_recall(list(en.tokens), en.embeddings, list(xx.tokens), xx.embeddings, different, k=3))
    assert result.recall_chance[i, j] == pytest.approx(100 * 3 / len(xx.tokens))
    assert np.isnan(result.recall[i, i])


def test_word_recall_chunk_size_does_not_change_anything():
    tables = embedding_tables(1, noise=1.0)
    gt = {("en", "xx"): sorted(LEXICON.items())}
    whole = word_translation_recall(tables, gt, chunk_size=1000).to_metrics()
    for chunk in (1, 3, 7):
        assert word_translation_recall(tables, gt, chunk_size=chunk).to_metrics() == whole


def test_word_recall_chance_matches_random_embeddings():
    rng = np.random.default_rng(2)
    tokens = [f"t{i}" for i in range(50)]
    gt = {("a", "b"): [(f"t{i}", f"t{(i * 7) % 50}") for i in range(50)]}
    runs = []
    for _ in range(40):
        tables = {"a": (tokens, rng.normal(size=(50, 32))), "b": (tokens, rng.normal(size=(50, 32)))}
        runs.append(word_translation_recall(tables, gt).recall[0, 1])
    chance = 100 * 10 / 50
    assert abs(np.mean(runs) - chance) < 4 * np.std(runs, ddof=1) / np.sqrt(len(runs))


@pytest.mark.parametrize("alignment", ["pairwise", "generalized"])
@pytest.mark.parametrize("csls", [False, True])
def test_alignment_undoes_a_rotation(alignment, csls):
    # rotated enough that only ~70% of words are their translation's nearest neighbour, little
    # enough that mutual neighbours still give mostly right anchors
    tables = embedding_tables(3, rotation_angle=2.0, noise=0.02)
    gt = {("en", "xx"): sorted((a, b) for a, b in LEXICON.items()) + [(f"en{i}", f"xx{i}") for i in range(20)]}
    report = word_translation(tables, gt, alignment=alignment, csls=csls, refinements=2, k=1)
    before, after = report.before, report.after
    assert before.recall_different[0, 1] < 80
    assert after.recall_different[0, 1] == 100 and after.recall_different[1, 0] == 100
    metrics = report.to_metrics()
    assert set(metrics) >= {"before_alignment", "after_alignment"}
    figure = metrics["after_alignment"]["different_tokens_recall@1"]["macro"]
    assert figure == {"value": 100.0, "chance": pytest.approx(100 / len(tables["xx"].tokens))}
    assert report.retrieval == ("csls" if csls else "cosine")


def test_generalized_alignment_over_three_languages():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(60, 16))
    tables, pairs = {}, {}
    for n, lang in enumerate(["aa", "bb", "cc"]):
        rotation = special_ortho_group.rvs(16, random_state=n) if n else np.eye(16)
        # languages start close (a shared model), so mutual neighbours give mostly right anchors
        near = 0.45 * rotation + 0.55 * np.eye(16)
        u, _, vt = np.linalg.svd(near)
        tables[lang] = ([f"{lang}{i}" for i in range(60)], base @ (u @ vt) + 0.02 * rng.normal(size=base.shape))
    for a, b in [("aa", "bb"), ("aa", "cc"), ("bb", "cc")]:
        pairs[(a, b)] = [(f"{a}{i}", f"{b}{i}") for i in range(60)]
    report = word_translation(tables, pairs, alignment="generalized", refinements=3, k=1)
    off = ~np.eye(3, dtype=bool)
    assert report.before.recall[off].min() < 85  # bb and cc were rotated apart
    assert (report.after.recall[off] == 100).all()
