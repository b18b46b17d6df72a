"""Retrieval metrics over embeddings, ranked in chunks so memory stays bounded.

Test sets of 100 000+ sentences make the full N x N similarity matrix too large (40 GB in float32),
so every function here takes a chunk of queries at a time, scores it against all keys, reduces the
chunk to what the metric needs (how many positives made the top k, or the rank of the best
positive) and drops the scores. Peak memory is a small multiple of ``chunk_size x N`` floats (the
scores and a comparison mask or two), whatever N: about 4 x 410 MB for N = 100 000 at the default
chunk of 1024 queries; a smaller chunk lowers it at some cost in speed.

Similarity is the cosine: embeddings are L2-normalised once, in float32, on the requested device.

Ties are resolved against the query: a negative scoring exactly as much as a positive is ranked
before it. A collapsed model that embeds everything to the same vector therefore scores 0, not
100%. Among positives tied at the cut-off, the free slots are shared out evenly (the expected
outcome of a random order between them), which keeps per-language attribution well defined.

Chance levels are the expected value of each figure under a uniformly random ranking of the same
candidates, computed exactly from the candidate and positive counts (never simulated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .figures import figure, pair_matrix

DEFAULT_CHUNK_SIZE = 1024
# Sentence-translation protocols: candidates of every language, or of the query's other languages only.
POOLED, OTHER_LANGUAGES = "pooled", "other languages"


# ---------------------------------------------------------------------------------------------
# shared helpers


def normalised(emb: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Rows of `emb` as float32 unit vectors on `device` (default: where `emb` already is, else CPU)."""
    t = torch.as_tensor(emb)
    if device is None:
        device = t.device if isinstance(emb, torch.Tensor) else "cpu"
    t = t.to(device=device, dtype=torch.float32)
    if t.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D matrix, got shape {tuple(t.shape)}")
    return torch.nn.functional.normalize(t, dim=1)


def query_chunks(n: int, chunk_size: int) -> Iterator[slice]:
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def index_values(values: Any, order: Sequence[str] | None = None) -> tuple[list, np.ndarray]:
    """Distinct values (sorted, or in `order`) and each element's index into them."""
    values = np.asarray(values)
    if order is None:
        names, codes = np.unique(values, return_inverse=True)
        return names.tolist(), codes.reshape(-1)
    names = list(order)
    lookup = {name: i for i, name in enumerate(names)}
    missing = sorted({v for v in values.tolist()} - set(lookup))
    if missing:
        raise ValueError(f"values not in the given order: {missing[:5]}")
    return names, np.fromiter((lookup[v] for v in values.tolist()), dtype=np.int64, count=len(values))


def members_by_group(group_codes: np.ndarray, n_groups: int | None = None) -> np.ndarray:
    """Row g lists the elements whose code is g, padded with -1: shape (n_groups, largest group)."""
    group_codes = np.asarray(group_codes, dtype=np.int64)
    sizes = np.bincount(group_codes, minlength=n_groups or 0)
    by_group = np.full((len(sizes), max(int(sizes.max(initial=0)), 1)), -1, dtype=np.int64)
    order = np.argsort(group_codes, kind="stable")
    starts = np.cumsum(sizes) - sizes
    by_group[group_codes[order], np.arange(len(order)) - starts[group_codes[order]]] = order
    return by_group


def group_members(group_codes: np.ndarray) -> np.ndarray:
    """For each element, the indices of the *other* elements of its group, padded with -1.

    Shape (N, largest group size): the element's own slot becomes one more pad.
    """
    group_codes = np.asarray(group_codes, dtype=np.int64)
    others = members_by_group(group_codes)[group_codes]
    others[others == np.arange(len(group_codes))[:, None]] = -1
    return others


def positives_in_top_k(scores: torch.Tensor, k: torch.Tensor, positive_scores: torch.Tensor,
                       positive_valid: torch.Tensor) -> torch.Tensor:
    """How much of each positive lands in the top k of its row (1, 0, or a share of a tie).

    scores: (B, N) with excluded candidates at -inf; k: (B,) with 1 <= k <= finite candidates;
    positive_scores/valid: (B, P). Uses only the k-th largest value of each row, so the cost is a
    top-k and two comparisons per row, not a sort.
    """
    k_max = int(k.max())
    kth = torch.topk(scores, k_max, dim=1).values.gather(1, (k - 1)[:, None])
    above = (scores > kth).sum(1)
    tied = (scores == kth).sum(1)
    pos_above = (positive_scores > kth) & positive_valid
    pos_tied = (positive_scores == kth) & positive_valid
    n_pos_tied = pos_tied.sum(1)
    free_slots = (k - above - (tied - n_pos_tied)).clamp(min=0)
    share = free_slots.to(torch.float64) / n_pos_tied.clamp(min=1)
    return pos_above.to(torch.float64) + pos_tied.to(torch.float64) * share[:, None]


def best_positive_rank(scores: torch.Tensor, positive_scores: torch.Tensor,
                       positive_valid: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's best positive: the number of negatives scoring at least as much."""
    masked = positive_scores.masked_fill(~positive_valid, float("-inf"))
    best = masked.max(1, keepdim=True).values
    at_least = (scores >= best).sum(1)
    positives_at_least = ((positive_scores >= best) & positive_valid).sum(1)
    return at_least - positives_at_least


def chance_any_in_top_k(n_candidates: Any, n_positives: Any, k: int) -> np.ndarray:
    """P(at least one of c positives is in the top k of n randomly ordered candidates).

    1 - C(n - c, k) / C(n, k), the hypergeometric probability of missing them all.
    """
    n = np.asarray(n_candidates, dtype=np.float64)
    c = np.asarray(n_positives, dtype=np.float64)
    miss_all = np.ones(np.broadcast(n, c).shape)
    for t in range(k):
        miss_all = miss_all * np.clip((n - c - t) / np.maximum(n - t, 1), 0.0, 1.0)
    return 1.0 - miss_all


def recall_from_scores(scores: Any, positive: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@K in percent for a full (queries x candidates) score matrix and a positive mask.

    A query counts at K if its best positive is in the top K (ties against it). Queries without
    positives are left out. For score matrices that already exist (e.g. after CLC aggregation).
    """
    scores = torch.as_tensor(scores, dtype=torch.float32)
    positive = torch.as_tensor(positive, dtype=torch.bool, device=scores.device)
    keep = positive.any(1)
    scores, positive = scores[keep], positive[keep]
    rank = best_positive_rank(scores, scores, positive)
    return {k: 100.0 * float((rank < k).to(torch.float64).mean()) for k in ks}


def recall_chance_from_mask(positive: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Chance level of `recall_from_scores` for the same positive mask."""
    positive = np.asarray(torch.as_tensor(positive, dtype=torch.bool).cpu())
    positive = positive[positive.any(1)]
    n, c = positive.shape[1], positive.sum(1)
    return {k: 100.0 * float(chance_any_in_top_k(n, c, k).mean()) for k in ks}


# ---------------------------------------------------------------------------------------------
# sentence translation by retrieval (Globetrotter 5.2)


@dataclass(frozen=True)
class SentenceTranslationResult:
    """Percent of positives (translations of the query) ranked within the top M-1.

    `retrieved_positives` pools every (query, positive) pair; `pair_retrieved[a, b]` is that
    percentage over queries in language a and their positives in language b (NaN: no such pair).
    Chance is the expected value for a random ranking: each positive of a query with k positives
    among N-1 candidates lands in the top k with probability k / (N-1), i.e. (M-1)/(N-1) when every
    group has one sentence in each of M languages.
    """

    languages: list[str]
    retrieved_positives: float
    chance: float
    pair_retrieved: np.ndarray
    pair_chance: np.ndarray
    pair_positives: np.ndarray
    num_queries: int
    num_positives: int
    protocol: str = "pooled"

    def to_metrics(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "retrieved_positives": figure(self.retrieved_positives, self.chance),
            "by_language_pair": pair_matrix(self.languages, self.pair_retrieved, self.pair_chance),
            "num_queries": self.num_queries,
            "num_positives": self.num_positives,
        }


def _translation_inputs(emb: Any, group_ids: Any, languages: Any, device: torch.device | str | None,
                        language_order: Sequence[str] | None) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """Unit keys, language names, each sentence's language code and its group mates (padded with -1)."""
    keys = normalised(emb, device)
    n = keys.shape[0]
    if len(group_ids) != n or len(languages) != n:
        raise ValueError("emb, group_ids and languages must have the same length")
    language_names, language_codes = index_values(languages, language_order)
    _, group_codes = index_values(group_ids)
    others = torch.from_numpy(group_members(group_codes)).to(keys.device)
    return keys, list(map(str, language_names)), torch.from_numpy(language_codes).to(keys.device), others


def sentence_translation(emb: Any, group_ids: Any, languages: Any, chunk_size: int = DEFAULT_CHUNK_SIZE,
                         device: torch.device | str | None = None,
                         language_order: Sequence[str] | None = None,
                         exclude_same_language: bool = False) -> SentenceTranslationResult:
    """Translation by retrieval: every sentence queries the others, its group mates are the positives.

    emb: (N, D) sentence embeddings; group_ids: (N,) one id per test caption, shared by its
    translations; languages: (N,) language of each sentence. A query with k positives (k = M-1 for a
    complete group) is scored by how many of them are in its top k among the candidates. Sentences
    alone in their group are not queries but remain candidates (distractors).

    Two protocols. Pooled (the paper's section 5.2 as written, `exclude_same_language=False`): the
    candidates are all N-1 other sentences, so sentences of the query's own language compete with its
    translations, and embeddings that keep any grouping by language score below chance (the floor is
    0, not chance). Other languages only (`exclude_same_language=True`, what the published code's
    retrieval does): the candidates are the sentences of the other languages, the positives the
    query's translations among them.
    """
    keys, language_names, lang, others = _translation_inputs(emb, group_ids, languages, device, language_order)
    n, n_lang, dev = keys.shape[0], len(language_names), keys.device
    retrieved = torch.zeros(n_lang * n_lang, dtype=torch.float64, device=dev)
    expected = torch.zeros(n_lang * n_lang, dtype=torch.float64, device=dev)
    counted = torch.zeros(n_lang * n_lang, dtype=torch.float64, device=dev)
    num_queries = 0
    per_language = torch.bincount(lang, minlength=n_lang)

    for rows in query_chunks(n, chunk_size):
        positives = others[rows]
        valid = positives >= 0
        rows_lang = lang[rows]
        if exclude_same_language:
            valid &= lang[positives.clamp(min=0)] != rows_lang[:, None]
        k = valid.sum(1)
        has_positives = k > 0
        if not bool(has_positives.any()):
            continue
        query_index = torch.arange(rows.start, rows.stop, device=dev)
        positives, valid, k, query_index = (positives[has_positives], valid[has_positives],
                                            k[has_positives], query_index[has_positives])
        scores = keys[query_index] @ keys.T
        scores[torch.arange(len(query_index), device=dev), query_index] = float("-inf")
        query_lang = lang[query_index]
        if exclude_same_language:
            scores.masked_fill_(lang[None, :] == query_lang[:, None], float("-inf"))
            n_candidates = n - per_language[query_lang]
        else:
            n_candidates = torch.full_like(k, n - 1)
        positive_scores = scores.gather(1, positives.clamp(min=0))
        credit = positives_in_top_k(scores, k, positive_scores, valid)
        del scores

        cell = (lang[query_index][:, None] * n_lang + lang[positives.clamp(min=0)])[valid]
        retrieved.index_add_(0, cell, credit[valid])
        counted.index_add_(0, cell, torch.ones_like(cell, dtype=torch.float64))
        chance_each = (k.to(torch.float64) / n_candidates.to(torch.float64))[:, None].expand_as(valid)[valid]
        expected.index_add_(0, cell, chance_each)
        num_queries += len(query_index)

    retrieved, expected, counted = (t.cpu().numpy().reshape(n_lang, n_lang) for t in (retrieved, expected, counted))
    total = counted.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_retrieved = 100.0 * retrieved / counted
        pair_chance = 100.0 * expected / counted
    return SentenceTranslationResult(
        languages=list(map(str, language_names)),
        retrieved_positives=100.0 * retrieved.sum() / total if total else float("nan"),
        chance=100.0 * expected.sum() / total if total else float("nan"),
        pair_retrieved=pair_retrieved,
        pair_chance=pair_chance,
        pair_positives=counted.astype(np.int64),
        num_queries=num_queries,
        num_positives=int(total),
        protocol=OTHER_LANGUAGES if exclude_same_language else POOLED,
    )


@dataclass(frozen=True)
class BitextRetrievalResult:
    """Translation by retrieval within one target language at a time, and how languages cluster.

    `pair_accuracy[a, b]`: percent of language-a sentences whose translation is the nearest of all
    language-b sentences (chance: 1 / number of b sentences). Unlike `sentence_translation`, whose
    candidates pool every language, this cannot be lowered by embeddings that group sentences by
    language; `own_language_share` measures that grouping: the percent of each query's top M-1
    neighbours (all languages pooled) that are in the query's own language, against the share a
    random ranking gives.
    """

    languages: list[str]
    accuracy: float
    chance: float
    pair_accuracy: np.ndarray
    pair_chance: np.ndarray
    own_language_share: float
    own_language_chance: float

    def to_metrics(self) -> dict[str, Any]:
        return {
            "accuracy": figure(self.accuracy, self.chance),
            "by_language_pair": pair_matrix(self.languages, self.pair_accuracy, self.pair_chance),
            "own_language_neighbours": figure(self.own_language_share, self.own_language_chance),
        }


def bitext_retrieval(emb: Any, group_ids: Any, languages: Any, chunk_size: int = DEFAULT_CHUNK_SIZE,
                     device: torch.device | str | None = None,
                     language_order: Sequence[str] | None = None) -> BitextRetrievalResult:
    """Top-1 translation retrieval per ordered language pair (the Tatoeba / BUCC style of metric).

    Every sentence with a translation in language b queries the sentences of b only; it scores if one
    of its translations ranks first (ties against it). The overall figure is the mean over queries and
    pairs. Inputs as for `sentence_translation`.
    """
    keys, language_names, lang, others = _translation_inputs(emb, group_ids, languages, device, language_order)
    n, n_lang, dev = keys.shape[0], len(language_names), keys.device
    per_language = torch.bincount(lang, minlength=n_lang)
    hits = np.zeros((n_lang, n_lang))
    expected = np.zeros((n_lang, n_lang))
    counted = np.zeros((n_lang, n_lang))
    own_share = own_chance = own_queries = 0.0

    for rows in query_chunks(n, chunk_size):
        query_index = torch.arange(rows.start, rows.stop, device=dev)
        positives = others[rows]
        valid = positives >= 0
        keep = valid.any(1)
        if not bool(keep.any()):
            continue
        query_index, positives, valid = query_index[keep], positives[keep], valid[keep]
        scores = keys[query_index] @ keys.T
        scores[torch.arange(len(query_index), device=dev), query_index] = float("-inf")
        positive_scores = scores.gather(1, positives.clamp(min=0))
        positive_lang = lang[positives.clamp(min=0)]
        query_lang = lang[query_index]

        k = valid.sum(1)  # the pooled metric's top M-1: which languages fill it
        top = torch.topk(scores, int(k.max()), dim=1).indices
        in_top_k = torch.arange(top.shape[1], device=dev)[None, :] < k[:, None]
        own = ((lang[top] == query_lang[:, None]) & in_top_k).sum(1).to(torch.float64) / k
        own_share += float(own.sum())
        own_chance += float(((per_language[query_lang] - 1).to(torch.float64) / (n - 1)).sum())
        own_queries += len(query_index)

        for b in range(n_lang):
            in_b = valid & (positive_lang == b)
            asks = in_b.any(1)
            if not bool(asks.any()):
                continue
            scores_b = scores[asks].masked_fill((lang != b)[None, :], float("-inf"))
            rank = best_positive_rank(scores_b, positive_scores[asks], in_b[asks])
            a_codes = query_lang[asks].cpu().numpy()
            np.add.at(hits[:, b], a_codes, (rank == 0).cpu().numpy().astype(np.float64))
            np.add.at(counted[:, b], a_codes, 1.0)
            n_pos = in_b[asks].sum(1).to(torch.float64).cpu().numpy()
            np.add.at(expected[:, b], a_codes, n_pos / int(per_language[b]))
        del scores

    total = counted.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_accuracy = 100.0 * hits / counted
        pair_chance = 100.0 * expected / counted
    return BitextRetrievalResult(
        languages=list(map(str, language_names)),
        accuracy=100.0 * hits.sum() / total if total else float("nan"),
        chance=100.0 * expected.sum() / total if total else float("nan"),
        pair_accuracy=pair_accuracy,
        pair_chance=pair_chance,
        own_language_share=100.0 * own_share / own_queries if own_queries else float("nan"),
        own_language_chance=100.0 * own_chance / own_queries if own_queries else float("nan"),
    )


# ---------------------------------------------------------------------------------------------
# cross-modal retrieval (Globetrotter 5.4, SMALR mean recall)


@dataclass(frozen=True)
class LanguageRecall:
    """Recall@K (percent) of one language's test set, in both directions, with chance levels."""

    image_to_text: dict[int, float]
    image_to_text_chance: dict[int, float]
    text_to_image: dict[int, float]
    text_to_image_chance: dict[int, float]
    mean_recall: float
    mean_recall_chance: float
    num_images: int
    num_texts: int

    def to_metrics(self) -> dict[str, Any]:
        return {
            "image_to_text": {f"R@{k}": figure(v, self.image_to_text_chance[k]) for k, v in self.image_to_text.items()},
            "text_to_image": {f"R@{k}": figure(v, self.text_to_image_chance[k]) for k, v in self.text_to_image.items()},
            "mean_recall": figure(self.mean_recall, self.mean_recall_chance),
            "num_images": self.num_images,
            "num_texts": self.num_texts,
        }


@dataclass(frozen=True)
class CrossModalResult:
    """Per-language recall, SMALR's mean recall averaged over all languages ("A") and over the
    human-captioned ones ("HA"; NaN when none was given or present)."""

    per_language: dict[str, LanguageRecall]
    average_mean_recall: float
    average_mean_recall_chance: float
    human_languages: list[str]
    human_average_mean_recall: float
    human_average_mean_recall_chance: float

    def to_metrics(self) -> dict[str, Any]:
        return {
            "per_language": {lang: r.to_metrics() for lang, r in self.per_language.items()},
            "average_mean_recall": figure(self.average_mean_recall, self.average_mean_recall_chance),
            "human_average_mean_recall": figure(self.human_average_mean_recall,
                                                self.human_average_mean_recall_chance),
            "human_languages": self.human_languages,
        }


def _recall_of_one_language(images: torch.Tensor, texts: torch.Tensor, text_image: np.ndarray,
                            ks: Sequence[int], chunk_size: int) -> LanguageRecall:
    """Both directions within one language: its captions and the images they describe."""
    dev = images.device
    n_images, n_texts = images.shape[0], texts.shape[0]

    # text -> image: one positive (the caption's image) among the n_images images
    text_hits = {k: 0 for k in ks}
    target = torch.from_numpy(text_image).to(dev)
    for rows in query_chunks(n_texts, chunk_size):
        scores = texts[rows] @ images.T
        positive_scores = scores.gather(1, target[rows][:, None])
        rank = best_positive_rank(scores, positive_scores, torch.ones_like(positive_scores, dtype=torch.bool))
        for k in ks:
            text_hits[k] += int((rank < k).sum())

    # image -> text: correct if any of the image's captions is in the top K
    captions_of = torch.from_numpy(members_by_group(text_image, n_images)).to(dev)
    image_hits = {k: 0 for k in ks}
    for rows in query_chunks(n_images, chunk_size):
        scores = images[rows] @ texts.T
        captions = captions_of[rows]
        valid = captions >= 0
        positive_scores = scores.gather(1, captions.clamp(min=0))
        rank = best_positive_rank(scores, positive_scores, valid)
        for k in ks:
            image_hits[k] += int((rank < k).sum())

    captions_per_image = np.bincount(text_image, minlength=n_images)
    i2t = {k: 100.0 * image_hits[k] / n_images for k in ks}
    t2i = {k: 100.0 * text_hits[k] / n_texts for k in ks}
    i2t_chance = {k: 100.0 * float(chance_any_in_top_k(n_texts, captions_per_image, k).mean()) for k in ks}
    t2i_chance = {k: 100.0 * min(k, n_images) / n_images for k in ks}
    return LanguageRecall(
        image_to_text=i2t, image_to_text_chance=i2t_chance,
        text_to_image=t2i, text_to_image_chance=t2i_chance,
        mean_recall=float(np.mean([*i2t.values(), *t2i.values()])),
        mean_recall_chance=float(np.mean([*i2t_chance.values(), *t2i_chance.values()])),
        num_images=n_images, num_texts=n_texts,
    )


def cross_modal_recall(image_emb: Any, text_emb: Any, text_image_index: Any, text_languages: Any,
                       ks: Sequence[int] = (1, 5, 10), chunk_size: int = DEFAULT_CHUNK_SIZE,
                       human_languages: Sequence[str] | None = None,
                       device: torch.device | str | None = None) -> CrossModalResult:
    """Recall@K image->text and text->image per language, and SMALR's mean recall.

    image_emb: (I, D); text_emb: (T, D); text_image_index: (T,) row of `image_emb` each caption
    describes; text_languages: (T,). Language l is evaluated on its own test set: its captions and
    the images that have at least one caption in l (images without one have no positive in l and
    are left out of both directions). Mean recall = mean of the R@K of both directions.
    """
    images_all = normalised(image_emb, device)
    texts_all = normalised(text_emb, images_all.device)
    text_image_index = np.asarray(text_image_index, dtype=np.int64)
    text_languages = np.asarray(text_languages)
    if not (len(text_image_index) == len(text_languages) == texts_all.shape[0]):
        raise ValueError("text_emb, text_image_index and text_languages must have the same length")
    if len(text_image_index) and (text_image_index.min() < 0 or text_image_index.max() >= images_all.shape[0]):
        raise ValueError("text_image_index points outside image_emb")

    per_language: dict[str, LanguageRecall] = {}
    for lang in sorted(set(text_languages.tolist())):
        text_rows = np.flatnonzero(text_languages == lang)
        image_rows, local_image = np.unique(text_image_index[text_rows], return_inverse=True)
        dev = images_all.device
        per_language[str(lang)] = _recall_of_one_language(
            images_all[torch.from_numpy(image_rows).to(dev)], texts_all[torch.from_numpy(text_rows).to(dev)],
            local_image.reshape(-1), ks, chunk_size)

    def average(langs: Sequence[str]) -> tuple[float, float]:
        present = [per_language[lang] for lang in langs if lang in per_language]
        if not present:
            return float("nan"), float("nan")
        return (float(np.mean([r.mean_recall for r in present])),
                float(np.mean([r.mean_recall_chance for r in present])))

    human = [str(lang) for lang in (human_languages or [])]
    avg, avg_chance = average(list(per_language))
    human_avg, human_chance = average(human)
    return CrossModalResult(per_language, avg, avg_chance, human, human_avg, human_chance)
