"""Aligning word embeddings of different languages with orthogonal maps (Globetrotter 3.4).

Globetrotter refines word translation after training: anchors are the k = 5 *mutual* nearest
neighbours between two languages' word embeddings (no dictionary), an orthogonal map is fitted on
them by Procrustes, and the multi-language form (Globetrotter's reference [51]) aligns all
languages at once. Orthogonal maps keep distances within a language, so they can only rotate a
language's whole space onto another's, not distort it to fit the anchors.

Generalised Procrustes here minimises, over one orthogonal map per language, the squared distance
of every mapped anchor to the mean of its anchor tuple, fitting every language in turn to the
mean of the others until the objective stops falling. Tuples may miss languages
(pairwise anchors are tuples of two), which is what mutual-neighbour anchors between many
languages give.

CSLS (Conneau et al. 2018, "Word translation without parallel data") corrects nearest-neighbour
retrieval for hubs, points that are close to many others:
``CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y)``, with r_T(x) the mean cosine of x to its k nearest
targets and r_S(y) the mean cosine of y to its k nearest (mapped) sources; k = 10.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .retrieval import DEFAULT_CHUNK_SIZE, normalised, query_chunks

CSLS_K = 10
ANCHOR_K = 5


def orthogonal_procrustes(source: Any, target: Any) -> torch.Tensor:
    """The orthogonal W minimising ||source @ W - target||_F (rows are corresponding points).

    With U S V^T the SVD of source^T target, W = U V^T (Schönemann 1966).
    """
    source = torch.as_tensor(source, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64, device=source.device)
    if source.shape != target.shape:
        raise ValueError(f"source and target must have the same shape, got {tuple(source.shape)} and {tuple(target.shape)}")
    u, _, vh = torch.linalg.svd(source.T @ target)
    return u @ vh


# ---------------------------------------------------------------------------------------------
# similarity between two sets of embeddings, one chunk of queries at a time


def mean_top_k_similarity(queries: torch.Tensor, keys: torch.Tensor, k: int = CSLS_K,
                          chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """For each (unit) query, the mean cosine to its k nearest (unit) keys: CSLS's r term."""
    k = min(k, keys.shape[0])
    out = torch.empty(queries.shape[0], dtype=torch.float32, device=queries.device)
    for rows in query_chunks(queries.shape[0], chunk_size):
        out[rows] = torch.topk(queries[rows] @ keys.T, k, dim=1).values.mean(1)
    return out


class Scorer:
    """Scores chunks of queries against all keys by cosine, or by CSLS when `csls_k` is set."""

    def __init__(self, queries: Any, keys: Any, csls_k: int | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, device: torch.device | str | None = None):
        self.queries = normalised(queries, device)
        self.keys = normalised(keys, self.queries.device)
        self.csls_k = csls_k
        if csls_k:
            self.query_hubness = mean_top_k_similarity(self.queries, self.keys, csls_k, chunk_size)
            self.key_hubness = mean_top_k_similarity(self.keys, self.queries, csls_k, chunk_size)

    def __call__(self, rows: Any) -> torch.Tensor:
        cosine = self.queries[rows] @ self.keys.T
        if not self.csls_k:
            return cosine
        return 2 * cosine - self.query_hubness[rows][:, None] - self.key_hubness[None, :]

    def reversed(self) -> "Scorer":
        """The same similarity with queries and keys swapped (CSLS is symmetric in its terms)."""
        swapped = Scorer.__new__(Scorer)
        swapped.queries, swapped.keys, swapped.csls_k = self.keys, self.queries, self.csls_k
        if self.csls_k:
            swapped.query_hubness, swapped.key_hubness = self.key_hubness, self.query_hubness
        return swapped


def nearest_neighbours(scorer: Scorer, k: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """(n_queries, k) indices of each query's k best keys."""
    n = scorer.queries.shape[0]
    k = min(k, scorer.keys.shape[0])
    out = torch.empty((n, k), dtype=torch.long, device=scorer.queries.device)
    for rows in query_chunks(n, chunk_size):
        out[rows] = torch.topk(scorer(rows), k, dim=1).indices
    return out


def mutual_nearest_neighbours(a: Any, b: Any, k: int = ANCHOR_K, csls_k: int | None = None,
                              chunk_size: int = DEFAULT_CHUNK_SIZE,
                              device: torch.device | str | None = None) -> np.ndarray:
    """Anchor pairs (i, j): b[j] is among a[i]'s k nearest in b, and a[i] among b[j]'s k nearest in a.

    Returns an (n_anchors, 2) int array sorted by (i, j). Cosine similarity, or CSLS if `csls_k`.
    """
    scorer = Scorer(a, b, csls_k, chunk_size, device)
    a_to_b = nearest_neighbours(scorer, k, chunk_size)
    b_to_a = nearest_neighbours(scorer.reversed(), k, chunk_size)
    # a_to_b[i, s] = j is mutual when i appears among b_to_a[j]
    back = b_to_a[a_to_b]  # (n_a, k, k)
    mutual = (back == torch.arange(a_to_b.shape[0], device=back.device)[:, None, None]).any(2)
    i, s = torch.nonzero(mutual, as_tuple=True)
    pairs = torch.stack([i, a_to_b[i, s]], 1).cpu().numpy()
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs.reshape(0, 2)


# ---------------------------------------------------------------------------------------------
# generalised (multi-language) Procrustes


def generalized_procrustes(views: Sequence[Any], correspondences: Any, max_iterations: int = 200,
                           tolerance: float = 1e-10) -> list[torch.Tensor]:
    """One orthogonal map per view aligning all of them to a common space.

    views: list of (n_v, d) matrices; correspondences: (n_tuples, n_views) row indices into each
    view, -1 where a tuple has no point in that view (each tuple needs at least two).

    Minimises the summed squared distance of every mapped point to its tuple's mean by block
    coordinate descent: each view in turn is fitted (Procrustes) to the mean of the *other* views'
    mapped points of each tuple, weighted by (n_t - 1) / n_t for a tuple of n_t points, which is the
    exact minimiser for that view with the others fixed. Stops when the objective improves by less
    than `tolerance` (relative).
    """
    xs = [torch.as_tensor(v, dtype=torch.float64) for v in views]
    tuples = torch.as_tensor(np.asarray(correspondences), dtype=torch.long)
    if tuples.ndim != 2 or tuples.shape[1] != len(xs):
        raise ValueError("correspondences must have one column per view")
    present = tuples >= 0
    size = present.sum(1, keepdim=True).to(torch.float64)
    if bool((size < 2).any()):
        raise ValueError("every tuple needs points in at least two views")
    d = xs[0].shape[1]
    maps = [torch.eye(d, dtype=torch.float64) for _ in xs]
    points = [x[tuples[present[:, v], v]] for v, x in enumerate(xs)]
    mapped = [p @ w for p, w in zip(points, maps)]
    total = torch.zeros((len(tuples), d), dtype=torch.float64)
    for v in range(len(xs)):
        total[present[:, v]] += mapped[v]

    def spread() -> float:
        means = total / size
        return sum(float(((mapped[v] - means[present[:, v]]) ** 2).sum()) for v in range(len(xs)))

    previous = spread()
    for _ in range(max_iterations):
        for v in range(len(xs)):
            if not len(points[v]):
                continue
            rows = present[:, v]
            others = (total[rows] - mapped[v]) / (size[rows] - 1)
            weight = (size[rows] - 1) / size[rows]
            maps[v] = orthogonal_procrustes(points[v] * weight, others)
            new = points[v] @ maps[v]
            total[rows] += new - mapped[v]
            mapped[v] = new
        current = spread()
        if previous - current <= tolerance * max(previous, 1e-300):
            break
        previous = current
    return maps
