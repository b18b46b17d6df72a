"""Word translation (Globetrotter 5.3): tf-idf ground truth from parallel sentences, recall@10.

No dictionaries exist for most language pairs, so Globetrotter builds the ground truth from the
test split that is translated into every language (appendix B.2). Our reading of that procedure,
for one ordered pair of languages (A, B):

- Sentences are aligned by their group id (one test caption and its translations). If a group has
  several sentences in A or B, every (A sentence, B sentence) pair of the group counts as aligned.
- The "document" d_i of an A token t_i is the multiset of B tokens of the B sentences aligned with
  the A sentences that contain t_i, with repetition: every occurrence of a B token in such a
  sentence counts. Each A sentence contributes once, however often t_i occurs in it.
- tf(j, d_i) = f(j, d_i) / sum_j' f(j', d_i)                              (eq. 6)
- idf(j) = log(|D| / |{d in D : t_j in d}|), D = the documents of all A tokens of the split (eq. 7),
  so a B token that co-occurs with every A token (a full stop, say) scores 0.
- tfidf_AB(i, j) = tf(j, d_i) * idf(j); tfidf_BA(j, i) is the same with A and B swapped.
- (t_i, t_j) is a ground-truth pair iff t_j is in the top 5 of tfidf_AB(i, .) over all j AND t_i is
  in the top 5 of tfidf_BA(j, .) over all i ("mutual top 5"). Top 5 counts only positive scores;
  equal scores are ordered by token (ascending), so the result is deterministic.

Evaluation: for every ground-truth pair (t_i, t_j) and both directions, t_i's embedding in A queries
all word embeddings of B and the pair counts when t_j is among the 10 best (ties against t_j).
Recall@10 is the percentage of pairs found, per ordered language pair, over all pairs and over the
pairs whose two tokens differ (with a shared vocabulary an identical token is often trivially its
own nearest neighbour). Chance is 10 / (number of B candidates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch

from .figures import figure, pair_matrix
from .procrustes import (ANCHOR_K, CSLS_K, Scorer, generalized_procrustes, mutual_nearest_neighbours,
                         orthogonal_procrustes)
from .retrieval import DEFAULT_CHUNK_SIZE, index_values, normalised, query_chunks

TOP_TFIDF = 5
RECALL_K = 10


# ---------------------------------------------------------------------------------------------
# ground truth


def _encoded(sentences: Sequence[Sequence[Hashable]]) -> tuple[list, list[np.ndarray]]:
    """Vocabulary (sorted) and every sentence as an array of indices into it."""
    flat = [t for s in sentences for t in s]
    if not flat:
        return [], [np.zeros(0, np.int64) for _ in sentences]
    vocabulary, codes = index_values(np.array(flat, dtype=object))
    return vocabulary, np.split(codes, np.cumsum([len(s) for s in sentences])[:-1])


def _tfidf(source: list[np.ndarray], target: list[np.ndarray], n_target: int) -> tuple[np.ndarray, ...]:
    """Sparse tfidf(i, j) as (i, j, value) arrays, for documents d_i built from aligned sentences.

    f(j, d_i) counts j over the target sentences aligned with source sentences containing i
    (each such sentence once, its target tokens with repetition).
    """
    rows = [np.repeat(np.unique(s), len(t)) for s, t in zip(source, target)]
    cols = [np.tile(t, len(np.unique(s))) for s, t in zip(source, target)]
    keys, f = np.unique(np.concatenate(rows) * n_target + np.concatenate(cols), return_counts=True)
    i, j = keys // n_target, keys % n_target
    lengths = np.bincount(i, weights=f)
    n_documents = int((lengths > 0).sum())
    document_frequency = np.bincount(j, minlength=n_target)
    tf = f / lengths[i]
    return i, j, tf * np.log(n_documents / document_frequency[j])


def _top_per_row(i: np.ndarray, j: np.ndarray, value: np.ndarray, top: int) -> set[tuple[int, int]]:
    """(i, j) of the `top` best positive values of every i; equal values by lower j."""
    keep = value > 0
    i, j, value = i[keep], j[keep], value[keep]
    order = np.lexsort((j, -value, i))
    i, j = i[order], j[order]
    first_of_row = np.searchsorted(i, i, side="left")
    chosen = np.arange(len(i)) - first_of_row < top
    return set(zip(i[chosen].tolist(), j[chosen].tolist()))


def tfidf_translation_pairs(sentences_a: Sequence[Sequence[Hashable]], sentences_b: Sequence[Sequence[Hashable]],
                            top: int = TOP_TFIDF) -> list[tuple[Hashable, Hashable]]:
    """Mutual-top-`top` tf-idf token pairs between two lists of aligned sentences (a[s] <-> b[s])."""
    if len(sentences_a) != len(sentences_b):
        raise ValueError("sentences_a and sentences_b must be aligned one to one")
    vocabulary_a, encoded_a = _encoded(sentences_a)
    vocabulary_b, encoded_b = _encoded(sentences_b)
    if not vocabulary_a or not vocabulary_b:
        return []
    a_to_b = _top_per_row(*_tfidf(encoded_a, encoded_b, len(vocabulary_b)), top)
    b_to_a = _top_per_row(*_tfidf(encoded_b, encoded_a, len(vocabulary_a)), top)
    mutual = sorted(pair for pair in a_to_b if (pair[1], pair[0]) in b_to_a)
    return [(vocabulary_a[i], vocabulary_b[j]) for i, j in mutual]


def ground_truth_pairs(token_lists: Sequence[Sequence[Hashable]], group_ids: Sequence[Hashable],
                       languages: Sequence[str], language_pairs: Sequence[tuple[str, str]] | None = None,
                       top: int = TOP_TFIDF) -> dict[tuple[str, str], list[tuple[Hashable, Hashable]]]:
    """Ground-truth token pairs for every unordered language pair (a < b) of an all-language split.

    token_lists[s] are the tokens of sentence s (ids or strings of a shared vocabulary);
    group_ids[s] ties a sentence to its translations; languages[s] is its language.
    """
    languages = np.asarray(languages)
    _, group_codes = index_values(group_ids)
    if language_pairs is None:
        language_pairs = list(combinations(sorted(set(languages.tolist())), 2))
    rows_by_language = {lang: np.flatnonzero(languages == lang) for lang in set(languages.tolist())}
    out = {}
    for a, b in language_pairs:
        rows_a, rows_b = rows_by_language.get(a, np.zeros(0, int)), rows_by_language.get(b, np.zeros(0, int))
        b_by_group: dict[int, list[int]] = {}
        for r in rows_b:
            b_by_group.setdefault(int(group_codes[r]), []).append(int(r))
        aligned = [(int(ra), rb) for ra in rows_a for rb in b_by_group.get(int(group_codes[ra]), [])]
        out[(a, b)] = tfidf_translation_pairs([token_lists[ra] for ra, _ in aligned],
                                              [token_lists[rb] for _, rb in aligned], top)
    return out


# ---------------------------------------------------------------------------------------------
# retrieval


@dataclass
class WordTranslationResult:
    """Recall@K (percent) per ordered language pair (query language a -> target language b).

    `recall` uses every ground-truth pair, `recall_different` only pairs whose tokens differ.
    Averages: `macro` over ordered language pairs that have ground truth, `pooled` over all pairs of
    tokens of all language pairs. NaN where a cell has no ground truth.
    """

    languages: list[str]
    k: int
    recall: np.ndarray
    recall_chance: np.ndarray
    recall_different: np.ndarray
    recall_different_chance: np.ndarray
    num_pairs: np.ndarray
    num_pairs_different: np.ndarray
    hits: np.ndarray = field(repr=False)
    hits_different: np.ndarray = field(repr=False)

    def _averages(self, recall, chance, hits, counts) -> dict[str, Any]:
        has = counts > 0
        if not has.any():
            return {"macro": figure(float("nan"), float("nan")), "pooled": figure(float("nan"), float("nan"))}
        return {
            "macro": figure(float(np.mean(recall[has])), float(np.mean(chance[has]))),
            "pooled": figure(100.0 * hits[has].sum() / counts[has].sum(),
                             float(np.sum(chance[has] * counts[has]) / counts[has].sum())),
        }

    def to_metrics(self) -> dict[str, Any]:
        return {
            f"all_tokens_recall@{self.k}": {
                **self._averages(self.recall, self.recall_chance, self.hits, self.num_pairs),
                "by_language_pair": pair_matrix(self.languages, self.recall, self.recall_chance),
            },
            f"different_tokens_recall@{self.k}": {
                **self._averages(self.recall_different, self.recall_different_chance, self.hits_different,
                                 self.num_pairs_different),
                "by_language_pair": pair_matrix(self.languages, self.recall_different,
                                                self.recall_different_chance),
            },
        }


@dataclass(frozen=True)
class WordTable:
    """One language's word embeddings: `tokens[r]` is the token of row r of `embeddings`."""

    tokens: Sequence[Hashable]
    embeddings: Any

    def rows_of(self, tokens: Sequence[Hashable]) -> np.ndarray:
        index = {t: r for r, t in enumerate(self.tokens)}
        return np.array([index.get(t, -1) for t in tokens], dtype=np.int64)


def _as_table(entry: Any) -> WordTable:
    return entry if isinstance(entry, WordTable) else WordTable(*entry)


def _rank_of_targets(scorer: Scorer, query_rows: np.ndarray, target_rows: np.ndarray, chunk_size: int) -> np.ndarray:
    """0-based rank of each pair's target among all keys of its query (ties against the target)."""
    ranks = np.empty(len(query_rows), dtype=np.int64)
    device = scorer.queries.device
    for chunk in query_chunks(len(query_rows), chunk_size):
        q = torch.from_numpy(query_rows[chunk]).to(device)
        t = torch.from_numpy(target_rows[chunk]).to(device)
        scores = scorer(q)
        target_scores = scores.gather(1, t[:, None])
        ranks[chunk] = ((scores >= target_scores).sum(1) - 1).cpu().numpy()
    return ranks


def word_translation_recall(tables: Mapping[str, Any], pairs: Mapping[tuple[str, str], Sequence[tuple[Hashable, Hashable]]],
                            k: int = RECALL_K, csls_k: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                            maps: Mapping[tuple[str, str], Any] | None = None,
                            device: torch.device | str | None = None) -> WordTranslationResult:
    """Recall@k of word translation by nearest-neighbour retrieval, both directions of every pair.

    tables: language -> WordTable (or (tokens, embeddings)); pairs: ground truth per unordered
    language pair (a, b) as (token in a, token in b). maps[(a, b)], when given, is the matrix that
    takes a's embeddings into the space where b's are searched; without one, (a, b) is searched as
    is. Pairs whose tokens lack a row in the tables are skipped. CSLS instead of cosine if `csls_k`.
    """
    tables = {lang: _as_table(t) for lang, t in tables.items()}
    languages = sorted(tables)
    index = {lang: i for i, lang in enumerate(languages)}
    n = len(languages)
    shape = (n, n)
    hits, counts = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    hits_diff, counts_diff = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    chance = np.full(shape, np.nan)

    for (a, b), token_pairs in pairs.items():
        if a not in tables or b not in tables or not token_pairs:
            continue
        for source, target, flip in ((a, b, False), (b, a, True)):
            src_table, tgt_table = tables[source], tables[target]
            queries = [p[1] if flip else p[0] for p in token_pairs]
            answers = [p[0] if flip else p[1] for p in token_pairs]
            q_rows, t_rows = src_table.rows_of(queries), tgt_table.rows_of(answers)
            found = (q_rows >= 0) & (t_rows >= 0)
            different = np.array([q != t for q, t in zip(queries, answers)], dtype=bool) & found
            query_emb = normalised(src_table.embeddings, device)
            if maps is not None and (source, target) in maps:
                query_emb = query_emb @ torch.as_tensor(maps[(source, target)], dtype=torch.float32,
                                                        device=query_emb.device)
            scorer = Scorer(query_emb, tgt_table.embeddings, csls_k, chunk_size, query_emb.device)
            ranks = np.full(len(token_pairs), np.iinfo(np.int64).max)
            ranks[found] = _rank_of_targets(scorer, q_rows[found], t_rows[found], chunk_size)
            i, j = index[source], index[target]
            hits[i, j], counts[i, j] = float((ranks[found] < k).sum()), int(found.sum())
            hits_diff[i, j], counts_diff[i, j] = float((ranks[different] < k).sum()), int(different.sum())
            n_candidates = len(tgt_table.tokens)
            chance[i, j] = 100.0 * min(k, n_candidates) / n_candidates

    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, 100.0 * hits / counts, np.nan)
        recall_diff = np.where(counts_diff > 0, 100.0 * hits_diff / counts_diff, np.nan)
    return WordTranslationResult(
        languages=languages, k=k,
        recall=recall, recall_chance=np.where(counts > 0, chance, np.nan),
        recall_different=recall_diff, recall_different_chance=np.where(counts_diff > 0, chance, np.nan),
        num_pairs=counts, num_pairs_different=counts_diff, hits=hits, hits_different=hits_diff,
    )


# ---------------------------------------------------------------------------------------------
# alignment, then before/after


def pairwise_alignment_maps(tables: Mapping[str, Any], language_pairs: Sequence[tuple[str, str]],
                            anchor_k: int = ANCHOR_K, csls_k: int | None = None, refinements: int = 0,
                            chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[tuple[str, str], torch.Tensor]:
    """Orthogonal map per ordered pair, fitted on mutual-nearest-neighbour anchors.

    `refinements` > 0 re-derives the anchors in the aligned space and refits, that many times.
    The map b -> a is the transpose of a -> b (the Procrustes solution with roles swapped).
    """
    tables = {lang: _as_table(t) for lang, t in tables.items()}
    maps = {}
    for a, b in language_pairs:
        source, target = normalised(tables[a].embeddings), normalised(tables[b].embeddings)
        w = torch.eye(source.shape[1], dtype=torch.float64)
        for _ in range(refinements + 1):
            anchors = mutual_nearest_neighbours(source @ w.to(torch.float32), target, anchor_k, csls_k, chunk_size)
            if len(anchors) == 0:
                break
            w = orthogonal_procrustes(source[anchors[:, 0]], target[anchors[:, 1]])
        maps[(a, b)], maps[(b, a)] = w, w.T
    return maps


def generalized_alignment_maps(tables: Mapping[str, Any], language_pairs: Sequence[tuple[str, str]],
                               anchor_k: int = ANCHOR_K, csls_k: int | None = None, refinements: int = 0,
                               chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[tuple[str, str], torch.Tensor]:
    """Maps from generalised Procrustes over all languages at once.

    Anchors are the mutual nearest neighbours of every language pair, each a tuple of two; every
    language gets one orthogonal map W_l into a common space, and a -> b is searched as
    (x W_a) against (y W_b), i.e. a's queries are mapped by W_a W_b^T into b's own space.
    """
    tables = {lang: _as_table(t) for lang, t in tables.items()}
    languages = sorted({lang for pair in language_pairs for lang in pair})
    column = {lang: c for c, lang in enumerate(languages)}
    embeddings = [normalised(tables[lang].embeddings) for lang in languages]
    d = embeddings[0].shape[1]
    common = [torch.eye(d, dtype=torch.float64) for _ in languages]
    for _ in range(refinements + 1):
        rows = []
        for a, b in language_pairs:
            mapped_a = embeddings[column[a]] @ common[column[a]].to(torch.float32)
            mapped_b = embeddings[column[b]] @ common[column[b]].to(torch.float32)
            for i, j in mutual_nearest_neighbours(mapped_a, mapped_b, anchor_k, csls_k, chunk_size):
                row = np.full(len(languages), -1, dtype=np.int64)
                row[column[a]], row[column[b]] = i, j
                rows.append(row)
        if not rows:
            break
        common = generalized_procrustes(embeddings, np.stack(rows))
    maps = {}
    for a, b in language_pairs:
        wa, wb = common[column[a]], common[column[b]]
        maps[(a, b)], maps[(b, a)] = wa @ wb.T, wb @ wa.T
    return maps


@dataclass
class WordTranslationReport:
    """Word translation before and after the orthogonal alignment."""

    before: WordTranslationResult
    after: WordTranslationResult
    alignment: str
    retrieval: str
    num_ground_truth_pairs: dict[tuple[str, str], int]

    def to_metrics(self) -> dict[str, Any]:
        return {
            "before_alignment": self.before.to_metrics(),
            "after_alignment": self.after.to_metrics(),
            "alignment": self.alignment,
            "retrieval": self.retrieval,
            "ground_truth_pairs": {f"{a}-{b}": n for (a, b), n in self.num_ground_truth_pairs.items()},
        }


def word_translation(tables: Mapping[str, Any], pairs: Mapping[tuple[str, str], Sequence[tuple[Hashable, Hashable]]],
                     alignment: str = "generalized", csls: bool = False, k: int = RECALL_K,
                     anchor_k: int = ANCHOR_K, csls_k: int = CSLS_K, refinements: int = 0,
                     chunk_size: int = DEFAULT_CHUNK_SIZE) -> WordTranslationReport:
    """Recall@k before and after alignment ("pairwise" or "generalized" Procrustes).

    With `csls`, CSLS(k=csls_k) replaces cosine both for retrieval and for choosing anchors.
    """
    if alignment not in ("pairwise", "generalized"):
        raise ValueError(f"alignment must be 'pairwise' or 'generalized', not {alignment!r}")
    neighbourhood = csls_k if csls else None
    language_pairs = [pair for pair, p in pairs.items() if p and pair[0] in tables and pair[1] in tables]
    before = word_translation_recall(tables, pairs, k, neighbourhood, chunk_size)
    fit = pairwise_alignment_maps if alignment == "pairwise" else generalized_alignment_maps
    maps = fit(tables, language_pairs, anchor_k, neighbourhood, refinements, chunk_size) if language_pairs else {}
    after = word_translation_recall(tables, pairs, k, neighbourhood, chunk_size, maps=maps)
    return WordTranslationReport(before, after, alignment, "csls" if csls else "cosine",
                                 {pair: len(p) for pair, p in pairs.items()})
