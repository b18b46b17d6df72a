"""Sentence translation by retrieval and cross-modal recall against brute force, chunking, chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dist_train.eval.retrieval import (bitext_retrieval, chance_any_in_top_k, cross_modal_recall, group_members,
                                       recall_chance_from_mask, recall_from_scores, sentence_translation)

from . import reference

LANGS = ["de", "el", "en", "ja"]


def assert_near_chance(measured, chance):
    """The mean over random-embedding runs lies within 4 standard errors of the computed chance."""
    measured = np.asarray(measured, dtype=float)
    standard_error = measured.std(ddof=1) / np.sqrt(len(measured))
    assert abs(measured.mean() - chance) < 4 * standard_error, (measured.mean(), chance, standard_error)


def translation_set(seed: int, groups: int = 15, noise: float = 1.0, dim: int = 16, drop: float = 0.0):
    """Groups of translations scattered around a shared point; optionally some translations missing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    emb, gid, lang = [], [], []
    for g in range(groups):
        for language in LANGS:
            if rng.random() < drop:
                continue
            emb.append(centres[g] + noise * rng.normal(size=dim))
            gid.append(f"g{g}")
            lang.append(language)
    return np.array(emb, dtype=np.float32), np.array(gid), np.array(lang)


def grouped_by_language(groups: int, dim: int = 16):
    """Translations close to each other, plus a large component that says the language."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(groups, dim))
    language_part = {language: 3 * np.sqrt(dim) * np.eye(len(LANGS))[i] for i, language in enumerate(LANGS)}
    emb = np.array([np.concatenate([centres[g] + 0.05 * rng.normal(size=dim), language_part[language]])
                    for g in range(groups) for language in LANGS], dtype=np.float32)
    gid = np.array([f"g{g}" for g in range(groups) for _ in LANGS])
    lang = np.array([language for _ in range(groups) for language in LANGS])
    return emb, gid, lang


@pytest.mark.parametrize("seed,drop", [(0, 0.0), (1, 0.0), (2, 0.3)])
def test_sentence_translation_matches_brute_force(seed, drop):
    emb, gid, lang = translation_set(seed, drop=drop)
    overall, chance, cells = reference.sentence_translation(emb, gid.tolist(), lang.tolist())
    result = sentence_translation(emb, gid, lang, chunk_size=8)
    assert result.retrieved_positives == pytest.approx(overall, abs=1e-9)
    assert result.chance == pytest.approx(chance, abs=1e-9)
    for a, qa in enumerate(result.languages):
        for b, tb in enumerate(result.languages):
            if (qa, tb) in cells:
                assert result.pair_retrieved[a, b] == pytest.approx(cells[(qa, tb)][0], abs=1e-9)
                assert result.pair_chance[a, b] == pytest.approx(cells[(qa, tb)][1], abs=1e-9)
            else:
                assert np.isnan(result.pair_retrieved[a, b])
    assert 0 < overall < 100  # the data is neither trivial nor hopeless



@pytest.mark.parametrize("seed,drop", [(0, 0.0), (2, 0.3)])
def test_sentence_translation_among_other_languages_matches_brute_force(seed, drop):
    emb, gid, lang = translation_set(seed, noise=1.5, drop=drop)
    # a second sentence of the same group in one language: a positive in the pooled protocol only
    emb, gid, lang = np.concatenate([emb, emb[:1] + 0.1]), np.append(gid, gid[0]), np.append(lang, lang[0])
    overall, chance, cells = reference.sentence_translation(emb, gid.tolist(), lang.tolist(), exclude_same_language=True)
    result = sentence_translation(emb, gid, lang, chunk_size=7, exclude_same_language=True)
    assert result.protocol == "other languages" and result.to_metrics()["protocol"] == "other languages"
    assert result.retrieved_positives == pytest.approx(overall, abs=1e-9)
    assert result.chance == pytest.approx(chance, abs=1e-9)
    for a, qa in enumerate(result.languages):
        assert np.isnan(result.pair_retrieved[a, a])  # no same-language positive is ever counted
        for b, tb in enumerate(result.languages):
            if (qa, tb) in cells:
                assert result.pair_retrieved[a, b] == pytest.approx(cells[(qa, tb)][0], abs=1e-9)
                assert result.pair_chance[a, b] == pytest.approx(cells[(qa, tb)][1], abs=1e-9)
    pooled = sentence_translation(emb, gid, lang, chunk_size=7)
    assert pooled.protocol == "pooled" and not np.isnan(pooled.pair_retrieved[0, 0])
    assert 0 < overall < 100


def test_excluding_the_own_language_removes_the_below_chance_floor():
    """Embeddings with a component that says the language score below chance pooled, far above it excluded."""
    groups = 30
    emb, gid, lang = grouped_by_language(groups)
    pooled = sentence_translation(emb, gid, lang)
    other = sentence_translation(emb, gid, lang, exclude_same_language=True)
    assert pooled.retrieved_positives < pooled.chance
    assert other.retrieved_positives == 100.0
    m, n = len(LANGS), len(emb)
    assert other.chance == pytest.approx(100 * (m - 1) / (n - groups))


@pytest.mark.parametrize("seed,drop", [(0, 0.0), (3, 0.3)])
def test_bitext_retrieval_matches_brute_force(seed, drop):
    emb, gid, lang = translation_set(seed, noise=1.5, drop=drop)
    cells, own, own_chance = reference.bitext(emb, gid.tolist(), lang.tolist())
    result = bitext_retrieval(emb, gid, lang, chunk_size=7)
    for a, qa in enumerate(result.languages):
        for b, tb in enumerate(result.languages):
            if (qa, tb) in cells:
                assert result.pair_accuracy[a, b] == pytest.approx(cells[(qa, tb)][0], abs=1e-9)
                assert result.pair_chance[a, b] == pytest.approx(cells[(qa, tb)][1], abs=1e-9)
            else:
                assert np.isnan(result.pair_accuracy[a, b])
    assert result.own_language_share == pytest.approx(own, abs=1e-9)
    assert result.own_language_chance == pytest.approx(own_chance, abs=1e-9)
    assert 0 < result.accuracy < 100


def test_embeddings_grouped_by_language_fail_the_pooled_metric_not_the_per_pair_one():
    """Translations close to each other, plus a large component that says the language: the pooled metric's top
    M-1 fill with same-language sentences (below chance), while within one target language the
    translation is still the nearest."""
    groups = 30
    emb, gid, lang = grouped_by_language(groups)
    pooled = sentence_translation(emb, gid, lang)
    assert pooled.retrieved_positives < pooled.chance
    per_pair = bitext_retrieval(emb, gid, lang)
    assert per_pair.accuracy == 100.0 and per_pair.chance == pytest.approx(100 / groups)
    assert per_pair.own_language_share == 100.0
    assert per_pair.own_language_chance == pytest.approx(100 * (groups - 1) / (len(emb) - 1))

def test_sentence_translation_chunk_size_does_not_change_anything():
    emb, gid, lang = translation_set(3, groups=23, drop=0.2)
    n = len(emb)
    whole = sentence_translation(emb, gid, lang, chunk_size=n)
    for chunk in (1, 3, 7, 10, n - 1, n + 5):
        part = sentence_translation(emb, gid, lang, chunk_size=chunk)
        assert part.retrieved_positives == whole.retrieved_positives
        np.testing.assert_array_equal(part.pair_retrieved, whole.pair_retrieved)
        np.testing.assert_array_equal(part.pair_chance, whole.pair_chance)
        assert part.num_queries == whole.num_queries and part.num_positives == whole.num_positives


def test_chance_is_m_minus_1_over_n_minus_1_for_complete_groups():
    emb, gid, lang = translation_set(4, groups=10)
    result = sentence_translation(emb, gid, lang)
    n, m = len(emb), len(LANGS)
    assert result.chance == pytest.approx(100 * (m - 1) / (n - 1))
    off_diagonal = ~np.eye(m, dtype=bool)
    np.testing.assert_allclose(result.pair_chance[off_diagonal], 100 * (m - 1) / (n - 1))
    assert np.isnan(result.pair_retrieved[~off_diagonal]).all()  # no positive in the query's own language
    assert result.num_positives == n * (m - 1)


def test_ties_count_against_the_query():
    # every sentence the same vector: a collapsed model retrieves nothing
    gid = np.repeat(np.arange(5), 4)
    lang = np.tile(LANGS, 5)
    collapsed = sentence_translation(np.ones((20, 3)), gid, lang, chunk_size=6)
    assert collapsed.retrieved_positives == 0.0
    # one-hot vectors: exact cosines. Query 0's 3 positives: one exact copy, two tied at 0 with
    # 15 negatives, one negative is also an exact copy -> top 3 = {copy positive, copy negative,
    # one of the tied zeros} and negatives go first, so 1 of 3 positives.
    emb = np.zeros((20, 20), dtype=np.float32)
    emb[np.arange(20), np.arange(20)] = 1
    emb[1] = emb[0]
    emb[4] = emb[0]
    result = sentence_translation(emb, gid, lang, chunk_size=3)
    overall, _, cells = reference.sentence_translation(emb, gid.tolist(), lang.tolist())
    assert result.retrieved_positives == pytest.approx(overall)
    q_de = result.languages.index("de")
    for b, tb in enumerate(result.languages):
        if ("de", tb) in cells:
            assert result.pair_retrieved[q_de, b] == pytest.approx(cells[("de", tb)][0])


def test_tied_positives_at_the_cut_off_share_the_free_slots():
    # query 0 (language a) has 3 positives (1, 2, 3 in b, c, d), all identical to negative 4;
    # negative 5 is nearly the query itself
    emb = np.array([[1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0.1]], dtype=np.float32)
    gid = np.array([0, 0, 0, 0, 1, 1])
    lang = np.array(["a", "b", "c", "d", "a", "b"])
    result = sentence_translation(emb, gid, lang)
    _, _, cells = reference.sentence_translation(emb, gid.tolist(), lang.tolist())
    a = result.languages.index("a")
    for tb in "bcd":
        assert result.pair_retrieved[a, result.languages.index(tb)] == pytest.approx(cells[("a", tb)][0])
    # query 0 vs 1..5 scores 0, 0, 0, 0, 0.995 with k = 3: the top 3 are 5, then 4 (negatives go
    # first), then one of the three tied positives, so each of them gets a third
    for tb in "cd":
        assert result.pair_retrieved[a, result.languages.index(tb)] == pytest.approx(100 / 3)
    # (a, b) also holds query 4, whose one positive (5) loses to the three copies of itself
    assert result.pair_retrieved[a, result.languages.index("b")] == pytest.approx((100 / 3 + 0) / 2)


def test_sentence_translation_chance_matches_random_embeddings():
    rng = np.random.default_rng(5)
    groups, m = 40, len(LANGS)
    gid, lang = np.repeat(np.arange(groups), m), np.tile(LANGS, groups)
    measured = [sentence_translation(rng.normal(size=(groups * m, 64)), gid, lang).retrieved_positives
                for _ in range(30)]
    chance = 100 * (m - 1) / (groups * m - 1)
    assert_near_chance(measured, chance)


def test_group_members_lists_the_others():
    others = group_members(np.array([2, 0, 2, 2, 0]))
    assert [sorted(x for x in row if x >= 0) for row in others.tolist()] == [[2, 3], [4], [0, 3], [0, 2], [1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_figures():
    emb, gid, lang = translation_set(7, groups=30)
    cpu = sentence_translation(emb, gid, lang, chunk_size=16)
    gpu = sentence_translation(emb, gid, lang, chunk_size=16, device="cuda")
    assert gpu.retrieved_positives == pytest.approx(cpu.retrieved_positives, abs=100 / cpu.num_positives)
    img, txt, ti, tl = captioned_images(3)
    a = cross_modal_recall(img, txt, ti, tl).average_mean_recall
    assert cross_modal_recall(img, txt, ti, tl, device="cuda").average_mean_recall == pytest.approx(a, abs=2)


def test_runs_on_a_given_device_and_accepts_tensors():
    emb, gid, lang = translation_set(6)
    a = sentence_translation(torch.from_numpy(emb), gid, lang, device="cpu")
    b = sentence_translation(emb, gid, lang)
    assert a.retrieved_positives == b.retrieved_positives


# ---------------------------------------------------------------------------------------------
# cross-modal


def captioned_images(seed: int, images: int = 30, noise: float = 1.2, dim: int = 16):
    """Each image has 1-3 captions per language; some images have none in 'fr'."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(images, dim)).astype(np.float32)
    text, text_image, text_lang = [], [], []
    for i in range(images):
        for language in ("en", "de", "fr"):
            if language == "fr" and i % 4 == 0:
                continue
            for _ in range(rng.integers(1, 4)):
                text.append(img[i] + noise * rng.normal(size=dim))
                text_image.append(i)
                text_lang.append(language)
    return img, np.array(text, dtype=np.float32), np.array(text_image), np.array(text_lang)


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_modal_recall_matches_brute_force(seed):
    img, txt, ti, tl = captioned_images(seed)
    expected = reference.cross_modal(img, txt, ti.tolist(), tl.tolist())
    result = cross_modal_recall(img, txt, ti, tl, chunk_size=7, human_languages=["en", "de"])
    assert set(result.per_language) == set(expected)
    for lang, exp in expected.items():
        got = result.per_language[lang]
        for k in (1, 5, 10):
            assert got.image_to_text[k] == pytest.approx(exp["i2t"][k])
            assert got.text_to_image[k] == pytest.approx(exp["t2i"][k])
        assert got.mean_recall == pytest.approx(np.mean([*exp["i2t"].values(), *exp["t2i"].values()]))
    assert result.per_language["fr"].num_images == sum(1 for i in range(len(img)) if i % 4)
    assert result.average_mean_recall == pytest.approx(np.mean([r.mean_recall for r in result.per_language.values()]))
    assert result.human_average_mean_recall == pytest.approx(
        np.mean([result.per_language[x].mean_recall for x in ("en", "de")]))
    assert 0 < result.per_language["en"].image_to_text[1] < 100


def test_cross_modal_chunk_size_does_not_change_anything():
    img, txt, ti, tl = captioned_images(2)
    whole = cross_modal_recall(img, txt, ti, tl, chunk_size=10_000)
    for chunk in (1, 4, 9, len(img) + 1):
        part = cross_modal_recall(img, txt, ti, tl, chunk_size=chunk)
        assert part.to_metrics() == whole.to_metrics()


def test_mean_recall_on_a_hand_made_case():
    # images are the unit axes; en caption 1 sits closer to image 2 (0.8) than to its own (0.6)
    img = np.eye(3, dtype=np.float32)
    txt = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    ti = np.array([0, 1, 2, 0, 1, 2])
    tl = np.array(["en"] * 3 + ["de"] * 3)
    result = cross_modal_recall(img, txt, ti, tl, human_languages=["de"])
    en = result.per_language["en"]
    # image->text: every image's best caption is its own (image 1: 0.6 vs 0, image 2: 1 vs 0.8)
    assert en.image_to_text == {1: 100.0, 5: 100.0, 10: 100.0}
    # text->image: caption 1 ranks image 2 first -> R@1 = 2/3; with 3 images R@5 = R@10 = 100
    assert en.text_to_image == pytest.approx({1: 200 / 3, 5: 100.0, 10: 100.0})
    assert en.mean_recall == pytest.approx((300 + 200 / 3 + 200) / 6)
    # chance: 1 positive among 3 candidates -> 1/3 at K=1, certain at K>=3, both directions
    assert en.mean_recall_chance == pytest.approx(100 * (1 / 3 + 1 + 1) / 3)
    assert result.per_language["de"].mean_recall == 100.0
    assert result.average_mean_recall == pytest.approx((en.mean_recall + 100) / 2)
    assert result.human_average_mean_recall == 100.0


def test_cross_modal_chance_matches_random_embeddings():
    rng = np.random.default_rng(7)
    images, per_image = 60, 2
    ti = np.repeat(np.arange(images), per_image)
    tl = np.array(["en"] * len(ti))
    runs = [cross_modal_recall(rng.normal(size=(images, 48)), rng.normal(size=(len(ti), 48)), ti, tl).per_language["en"]
            for _ in range(40)]
    for k in (1, 5, 10):
        assert_near_chance([r.image_to_text[k] for r in runs], runs[0].image_to_text_chance[k])
        assert_near_chance([r.text_to_image[k] for r in runs], runs[0].text_to_image_chance[k])
    assert_near_chance([r.mean_recall for r in runs], runs[0].mean_recall_chance)


def test_hypergeometric_chance_against_counting():
    from itertools import combinations

    n, c, k = 7, 2, 3
    subsets = list(combinations(range(n), k))  # the top-k set of a random order is a uniform k-subset
    hit = sum(1 for s in subsets if 0 in s or 1 in s) / len(subsets)
    assert float(chance_any_in_top_k(n, c, k)) == pytest.approx(hit)
    assert float(chance_any_in_top_k(5, 1, 10)) == 1.0


def test_recall_from_scores_and_its_chance():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.3, 0.9, 0.8]])
    positive = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    # row 1: tie with a negative counts against -> rank 1; row 2: rank 1
    assert recall_from_scores(scores, positive, ks=(1, 2)) == pytest.approx({1: 100 / 3, 2: 100.0})
    assert recall_chance_from_mask(positive, ks=(1, 3)) == pytest.approx({1: 100 / 3, 3: 100.0})
