"""Orthogonal Procrustes against scipy, rotations recovered, mutual neighbours and CSLS against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes as scipy_procrustes
from scipy.stats import special_ortho_group

from dist_train.eval.procrustes import (Scorer, generalized_procrustes, mean_top_k_similarity,
                                        mutual_nearest_neighbours, orthogonal_procrustes)

from . import reference


@pytest.mark.parametrize("seed,n,d", [(0, 40, 5), (1, 200, 32), (2, 12, 12)])
def test_procrustes_matches_scipy(seed, n, d):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    ours = orthogonal_procrustes(a, b).numpy()
    theirs, _ = scipy_procrustes(a, b)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    np.testing.assert_allclose(ours.T @ ours, np.eye(d), atol=1e-10)


def test_known_rotation_is_recovered_despite_noise():
    rng = np.random.default_rng(3)
    rotation = special_ortho_group.rvs(16, random_state=4)
    x = rng.normal(size=(300, 16))
    y = x @ rotation + 0.01 * rng.normal(size=x.shape)
    np.testing.assert_allclose(orthogonal_procrustes(x, y).numpy(), rotation, atol=5e-3)


def test_generalized_procrustes_aligns_three_rotated_copies_with_partial_tuples():
    rng = np.random.default_rng(5)
    shared = rng.normal(size=(60, 8))
    rotations = [special_ortho_group.rvs(8, random_state=s) for s in (1, 2, 3)]
    views = [shared @ r for r in rotations]
    # tuples: all three languages for the first 20 points, pairs only for the rest
    rows = [[i, i, i] for i in range(20)] + [[i, i, -1] for i in range(20, 40)] + [[-1, i, i] for i in range(40, 60)]
    maps = generalized_procrustes(views, np.array(rows))
    aligned = [torch.as_tensor(v) @ w for v, w in zip(views, maps)]
    np.testing.assert_allclose(aligned[0].numpy(), aligned[1].numpy(), atol=1e-8)
    np.testing.assert_allclose(aligned[1].numpy(), aligned[2].numpy(), atol=1e-8)
    for w in maps:
        np.testing.assert_allclose((w.T @ w).numpy(), np.eye(8), atol=1e-10)


def test_generalized_procrustes_with_two_views_is_ordinary_procrustes():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    wa, wb = generalized_procrustes([a, b], np.stack([np.arange(50)] * 2, 1))
    # a -> b through the common space
    np.testing.assert_allclose((wa @ wb.T).numpy(), scipy_procrustes(a, b)[0], atol=1e-6)


def test_generalized_procrustes_rejects_tuples_with_one_view():
    with pytest.raises(ValueError):
        generalized_procrustes([np.eye(3), np.eye(3)], np.array([[0, -1]]))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_mutual_nearest_neighbours_match_brute_force(k):
    rng = np.random.default_rng(k)
    a, b = rng.normal(size=(37, 6)), rng.normal(size=(29, 6))
    pairs = mutual_nearest_neighbours(a, b, k=k, chunk_size=4)
    assert [tuple(p) for p in pairs.tolist()] == reference.mutual_neighbours(a, b, k)


def test_mutual_nearest_neighbours_of_a_copy_are_the_identity():
    x = np.random.default_rng(0).normal(size=(25, 5))
    assert mutual_nearest_neighbours(x, x, k=1).tolist() == [[i, i] for i in range(25)]


@pytest.mark.parametrize("k", [1, 4, 10])
def test_csls_matches_the_formula(k):
    rng = np.random.default_rng(10 + k)
    src, tgt = rng.normal(size=(31, 8)), rng.normal(size=(23, 8))
    scorer = Scorer(src, tgt, csls_k=k, chunk_size=5)
    np.testing.assert_allclose(scorer(np.arange(31)).numpy(), reference.csls(src, tgt, k), atol=1e-5)
    np.testing.assert_allclose(scorer.reversed()(np.arange(23)).numpy(), reference.csls(src, tgt, k).T, atol=1e-5)


def test_mean_top_k_similarity_chunked_equals_whole():
    rng = np.random.default_rng(2)
    q = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(40, 6)), dtype=torch.float32), dim=1)
    keys = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(17, 6)), dtype=torch.float32), dim=1)
    whole = mean_top_k_similarity(q, keys, 10, chunk_size=40)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(mean_top_k_similarity(q, keys, 10, chunk_size=chunk), whole)


def test_csls_anchors_match_brute_force():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(26, 6))
    scores = reference.csls(a, b, 10)
    near_b = [set(np.argsort(-row, kind="stable")[:3]) for row in scores]
    near_a = [set(np.argsort(-col, kind="stable")[:3]) for col in scores.T]
    expected = sorted((i, j) for i in range(30) for j in near_b[i] if i in near_a[j])
    got = mutual_nearest_neighbours(a, b, k=3, csls_k=10, chunk_size=7)
    assert [tuple(p) for p in got.tolist()] == expected
