"""Brute-force versions of the metrics, written for clarity and not speed: full float64 matrices,
plain Python loops and sorted lists. The library is tested against these on small random data."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np


def unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sentence_translation(emb, group_ids, languages, exclude_same_language=False):
    """(overall %, chance %, {(qa, tb): (%, chance %)}) with negatives first among equal scores and
    positives tied at the cut-off sharing the remaining slots equally; with exclude_same_language the
    candidates (and so the positives) are the sentences of the other languages only."""
    e = unit_rows(emb)
    sim = e @ e.T
    n = len(e)
    got, expected, total = defaultdict(float), defaultdict(float), defaultdict(int)
    for q in range(n):
        pool = [j for j in range(n) if j != q and not (exclude_same_language and languages[j] == languages[q])]
        positives = [j for j in pool if group_ids[j] == group_ids[q]]
        if not positives:
            continue
        k = len(positives)
        candidates = sorted(pool, key=lambda j: (-sim[q, j], j in positives))
        top = set(candidates[:k])
        cut = sim[q, candidates[k - 1]]
        tied = [p for p in positives if sim[q, p] == cut]
        tied_in_top = sum(1 for p in tied if p in top)
        for p in positives:
            if p in tied:
                credit = tied_in_top / len(tied)
            else:
                credit = 1.0 if p in top else 0.0
            cell = (languages[q], languages[p])
            got[cell] += credit
            expected[cell] += k / len(pool)
            total[cell] += 1
    overall = 100 * sum(got.values()) / sum(total.values())
    chance = 100 * sum(expected.values()) / sum(total.values())
    cells = {c: (100 * got[c] / total[c], 100 * expected[c] / total[c]) for c in total}
    return overall, chance, cells



def bitext(emb, group_ids, languages):
    """({(qa, tb): (top-1 %, chance %)}, own-language share %, its chance %): every query in qa that
    has a translation in tb against all tb sentences, negatives first among equal scores."""
    e = unit_rows(emb)
    sim = e @ e.T
    n = len(e)
    hits, expected, total = defaultdict(float), defaultdict(float), defaultdict(int)
    own, own_chance, queries = 0.0, 0.0, 0
    for q in range(n):
        positives = [j for j in range(n) if j != q and group_ids[j] == group_ids[q]]
        if not positives:
            continue
        ranked = sorted((j for j in range(n) if j != q), key=lambda j: (-sim[q, j], j in positives))
        own += sum(languages[j] == languages[q] for j in ranked[:len(positives)]) / len(positives)
        own_chance += (sum(lang == languages[q] for lang in languages) - 1) / (n - 1)
        queries += 1
        for target in sorted({languages[p] for p in positives}):
            pool = [j for j in range(n) if languages[j] == target]
            in_pool = [p for p in positives if languages[p] == target]
            best = max(sim[q, p] for p in in_pool)
            first = not any(sim[q, j] >= best for j in pool if j not in in_pool)
            cell = (languages[q], target)
            hits[cell] += float(first)
            expected[cell] += len(in_pool) / len(pool)
            total[cell] += 1
    cells = {c: (100 * hits[c] / total[c], 100 * expected[c] / total[c]) for c in total}
    return cells, 100 * own / queries, 100 * own_chance / queries


def cross_modal(image_emb, text_emb, text_image, text_languages, ks=(1, 5, 10)):
    """{lang: {"i2t": {k: %}, "t2i": {k: %}}} on each language's own images."""
    images, texts = unit_rows(image_emb), unit_rows(text_emb)
    out = {}
    for lang in sorted(set(text_languages)):
        my_texts = [t for t in range(len(texts)) if text_languages[t] == lang]
        my_images = sorted({text_image[t] for t in my_texts})
        t2i_hits = Counter()
        for t in my_texts:
            s = {i: float(images[i] @ texts[t]) for i in my_images}
            rank = sum(1 for i in my_images if i != text_image[t] and s[i] >= s[text_image[t]])
            for k in ks:
                t2i_hits[k] += rank < k
        i2t_hits = Counter()
        for i in my_images:
            s = {t: float(images[i] @ texts[t]) for t in my_texts}
            order = sorted(my_texts, key=lambda t: (-s[t], text_image[t] == i))
            first = next(pos for pos, t in enumerate(order) if text_image[t] == i)
            for k in ks:
                i2t_hits[k] += first < k
        out[lang] = {"i2t": {k: 100 * i2t_hits[k] / len(my_images) for k in ks},
                     "t2i": {k: 100 * t2i_hits[k] / len(my_texts) for k in ks}}
    return out


def tfidf_pairs(sentences_a, sentences_b, top=5):
    """Mutual top-`top` tf-idf pairs, with Counters and math.log."""

    def scores(src, dst):
        documents = defaultdict(Counter)
        for s_src, s_dst in zip(src, dst):
            for token in set(s_src):
                documents[token].update(s_dst)
        documents = {t: d for t, d in documents.items() if sum(d.values()) > 0}
        df = Counter(token for d in documents.values() for token in d)
        table = {}
        for token, d in documents.items():
            length = sum(d.values())
            table[token] = {j: (f / length) * math.log(len(documents) / df[j]) for j, f in d.items()}
        return table

    def best(table):
        return {t: {j for j, v in sorted(((j, v) for j, v in row.items() if v > 0), key=lambda jv: (-jv[1], jv[0]))[:top]}
                for t, row in table.items()}

    ab, ba = best(scores(sentences_a, sentences_b)), best(scores(sentences_b, sentences_a))
    return sorted((i, j) for i, js in ab.items() for j in js if i in ba.get(j, set()))


def word_recall(src_tokens, src_emb, tgt_tokens, tgt_emb, pairs, k=10):
    """% of (src token, tgt token) pairs whose target is within the k best by cosine (ties against)."""
    src, tgt = unit_rows(src_emb), unit_rows(tgt_emb)
    hits = 0
    for a, b in pairs:
        q = src[src_tokens.index(a)]
        scores = tgt @ q
        target = scores[tgt_tokens.index(b)]
        better_or_equal = sum(1 for r, s in enumerate(scores) if tgt_tokens[r] != b and s >= target)
        hits += better_or_equal < k
    return 100 * hits / len(pairs)


def csls(src_emb, tgt_emb, k=10):
    src, tgt = unit_rows(src_emb), unit_rows(tgt_emb)
    cos = src @ tgt.T
    r_tgt = np.array([np.mean(sorted(row, reverse=True)[:k]) for row in cos])
    r_src = np.array([np.mean(sorted(col, reverse=True)[:k]) for col in cos.T])
    return 2 * cos - r_tgt[:, None] - r_src[None, :]


def mutual_neighbours(a, b, k):
    cos = unit_rows(a) @ unit_rows(b).T
    near_b = [set(np.argsort(-row, kind="stable")[:k]) for row in cos]
    near_a = [set(np.argsort(-col, kind="stable")[:k]) for col in cos.T]
    return sorted((i, j) for i in range(len(a)) for j in near_b[i] if i in near_a[j])
