"""`dist-train eval`: a trained model (DeepSpeed checkpoints or an export) measured on a test split.

Writes OUT/metrics.json (every figure beside its chance), OUT/report.md, TensorBoard summaries in OUT/tb
and the language-pair heatmaps
of sentence and word translation. Works on one process without DeepSpeed; the training engine calls
the same metric functions during training.

Sections of metrics.json:

- `sentence_translation`: translation by retrieval (Globetrotter 5.2) among the sentences of the
  query's other languages (the published code's protocol, the headline), and
  `sentence_translation_pooled` among all sentences (the paper's text); see `translation_metrics`.
- `bitext_retrieval`: top-1 per ordered language pair, and the own-language share of neighbours.
- `word_translation`: recall@10 of word translation before and after orthogonal alignment
  (Globetrotter 5.3, 3.4 and appendix B.2), see `word_translation_metrics` below.
- `cross_modal`: recall@K both directions per language and SMALR's mean recall; when the split's
  captions carry machine-translated queries (`meta.translations`, made by `dist-train preprocess`
  with `translate.query_splits`), a `clc` subsection with SMALR's cross-lingual consistency
  (CLC-A, and CLC-C when the validation split has translated queries too), see `clc_text_to_image`.

A figure that cannot be computed on the split (no pair of languages written in disjoint scripts, no
human-captioned languages named, no ground-truth word pairs) is never reported as a number: its node
carries a `"skipped": "<reason>"` entry instead, which the report shows, and TensorBoard leaves it out.
A split without captions that translate each other (no translation groups) is refused up front
(ConfigError): see `dist_train.train.data.check_translation_groups`.
"""

from __future__ import annotations

import collections
import json
import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from dist_train.eval.clc import CLCClassifier, clc_average, clc_classifier_scores, train_clc_classifier
from dist_train.eval.embed import (SplitCaptions, embed_batches, embed_tokens, read_split_captions,
                                   read_split_images)
from dist_train.eval.figures import figure
from dist_train.eval.report import save_pair_heatmap, write_markdown_report
from dist_train.eval.retrieval import (DEFAULT_CHUNK_SIZE, best_positive_rank, bitext_retrieval, cross_modal_recall,
                                       normalised, query_chunks, sentence_translation)
from dist_train.eval.word_translation import WordTable, ground_truth_pairs
from dist_train.eval.word_translation import word_translation as word_translation_report
from dist_train.storage import location
from dist_train.train.export import load_model

log = logging.getLogger(__name__)

WORD_REPRESENTATIONS = ("input", "contextual")
WORD_ALIGNMENTS = ("generalized", "pairwise")
CLC_KS = (1, 5, 10)
# CLC-C is fitted full batch on (languages x queries x images) scores of the validation split; above
# this many queries a seeded sample of them (and their images) is used, so memory stays bounded.
CLC_VAL_MAX_QUERIES = 1000  # the classifier's hidden layer holds queries x images x 32 activations
UNK_ID = 1  # sentencepiece models trained by `dist-train preprocess` (see preprocess.vocab)


def scripts_of(captions: list[str]) -> set[str]:
    """The Unicode scripts a language's captions are written in (LATIN, CYRILLIC, CJK, HANGUL, ...)."""
    counts: collections.Counter = collections.Counter()
    for text in captions:
        for ch in text:
            if ch.isalpha():
                counts[unicodedata.name(ch, "UNKNOWN").split()[0]] += 1
    total = sum(counts.values())
    return {script for script, n in counts.items() if n >= 0.05 * total}  # ignore stray foreign letters


# ---------------------------------------------------------------------------------------------
# word translation (Globetrotter 5.3)


def special_token_ids(model_config: Mapping[str, Any]) -> set[int]:
    """Ids that are not words: PAD, UNK, BOS, EOS and the cloze mask."""
    return {int(model_config.get(name, default)) for name, default in
            (("pad_id", 0), ("bos_id", 2), ("eos_id", 3), ("mask_id", 4))} | {UNK_ID}


def _word_tokens(tokens: Sequence[Any], drop: set[int]) -> list[list[int]]:
    return [[int(t) for t in np.asarray(s).tolist() if int(t) not in drop] for s in tokens]


def _tokens_by_language(token_lists: Sequence[Sequence[int]], languages: Sequence[str]) -> dict[str, list[int]]:
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for tokens, lang in zip(token_lists, languages):
        seen[str(lang)].update(tokens)
    return {lang: sorted(ids) for lang, ids in sorted(seen.items()) if ids}


def input_embedding_tables(word_embeddings: Any, token_lists: Sequence[Sequence[Any]], languages: Sequence[str],
                           drop: Sequence[int] = ()) -> dict[str, WordTable]:
    """One table per language: the rows of the (shared) input word-embedding matrix for the tokens
    that occur in that language's captions (special ids in `drop` left out), sorted by id.

    The vocabulary is shared, so a token used by two languages has the same row in both tables;
    that is why word translation is also reported over tokens that differ between the languages.
    """
    weight = torch.as_tensor(word_embeddings).detach().float().cpu()
    tables = {}
    for lang, ids in _tokens_by_language(_word_tokens(token_lists, set(drop)), languages).items():
        tables[lang] = WordTable(ids, weight[torch.tensor(ids, dtype=torch.long)].numpy())
    return tables


@torch.no_grad()
def contextual_embedding_tables(hidden_of: Callable[[torch.Tensor], torch.Tensor], token_lists: Sequence[Sequence[Any]],
                                languages: Sequence[str], max_tokens: int, bos_id: int, eos_id: int, pad_id: int,
                                drop: Sequence[int] = (), batch_size: int = 128) -> dict[str, WordTable]:
    """One table per language: each token's last-layer hidden state averaged over its occurrences in
    that language's captions (the alternative to `input_embedding_tables`).

    hidden_of(tokens [B, T]) -> [B, T, H], the encoder's output for `[BOS, ids..., EOS, PAD...]`
    rows. Tokens cut off by `max_tokens` are not seen; special ids in `drop` are left out. Memory:
    one running sum per (language, token) that occurs, never per occurrence.
    """
    from dist_train.models.text_batch import pad_tokens

    drop = set(int(d) for d in drop)
    languages = [str(lang) for lang in languages]
    kept = [[int(t) for t in np.asarray(s).tolist()][: max_tokens - 2] for s in token_lists]
    by_language = _tokens_by_language(_word_tokens(kept, drop), languages)
    row_of: dict[tuple[str, int], int] = {}
    for lang, ids in by_language.items():
        for t in ids:
            row_of[(lang, t)] = len(row_of)
    sums: torch.Tensor | None = None
    counts = torch.zeros(len(row_of), dtype=torch.float64)
    for chunk in query_chunks(len(kept), batch_size):
        batch = pad_tokens(kept[chunk], max_tokens, bos_id, eos_id, pad_id)
        hidden = hidden_of(batch).detach().to(torch.float64).cpu()
        if sums is None:
            sums = torch.zeros((len(row_of), hidden.shape[-1]), dtype=torch.float64)
        rows, batch_index, positions = [], [], []
        for b, i in enumerate(range(chunk.start, chunk.stop)):
            for p, t in enumerate(kept[i]):
                if t not in drop:
                    rows.append(row_of[(languages[i], t)])
                    batch_index.append(b)
                    positions.append(p + 1)  # position 0 is BOS
        if rows:
            rows_t = torch.tensor(rows, dtype=torch.long)
            sums.index_add_(0, rows_t, hidden[torch.tensor(batch_index), torch.tensor(positions)])
            counts.index_add_(0, rows_t, torch.ones(len(rows), dtype=torch.float64))
    tables = {}
    for lang, ids in by_language.items():
        rows_t = torch.tensor([row_of[(lang, t)] for t in ids], dtype=torch.long)
        tables[lang] = WordTable(ids, (sums[rows_t] / counts[rows_t, None]).float().numpy())
    return tables


def word_translation_metrics(tables: Mapping[str, WordTable], token_lists: Sequence[Sequence[Any]],
                             groups: Sequence[Any], languages: Sequence[str], drop: Sequence[int] = (),
                             csls: bool = False, alignment: str = "generalized",
                             representation: str = "input") -> dict[str, Any]:
    """Word translation of an all-language split: tf-idf ground truth with mutual top 5 (appendix
    B.2) from the split's aligned captions, then recall@10 per ordered language pair before and
    after orthogonal alignment, over all ground-truth pairs and over those whose tokens differ.

    tables: language -> WordTable of that language's token representations; token_lists, groups,
    languages: the split's captions (token ids), translation groups and languages. Special ids in
    `drop` are removed from the captions before the ground truth is built. Every figure comes with
    its chance (10 / candidates of the target language).
    """
    token_lists = _word_tokens(token_lists, set(int(d) for d in drop))
    languages = [str(lang) for lang in languages]
    present = sorted(lang for lang in set(languages) if lang in tables)
    language_pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
    pairs = ground_truth_pairs(token_lists, list(groups), languages, language_pairs)
    result = word_translation_report(tables, pairs, alignment=alignment, csls=csls)
    metrics = result.to_metrics()
    for stage in ("before_alignment", "after_alignment"):
        for subset, which in (("all_tokens", "ground-truth word pairs"),
                              ("different_tokens", "ground-truth word pairs whose tokens differ")):
            node = metrics[stage][f"{subset}_recall@{result.before.k}"]
            if node["macro"]["value"] is None:
                node["skipped"] = (f"no {which}: the tf-idf ground truth found none in the split's translation "
                                   "groups")
    metrics["representation"] = {"input": "input word embeddings (shared table, rows of each language's tokens)",
                                 "contextual": "last-layer hidden states averaged over each token's occurrences"
                                 }.get(representation, representation)
    metrics["tokens_per_language"] = {lang: len(tables[lang].tokens) for lang in present}
    return metrics


# ---------------------------------------------------------------------------------------------
# cross-lingual consistency (SMALR 3.4) for text -> image retrieval


def translations_of(md: Mapping[str, Any]) -> dict[str, str]:
    """A caption's translated queries {language: text}: `meta.translations` (or top-level)."""
    meta = md.get("meta") or {}
    found = meta.get("translations", md.get("translations")) or {}
    return {str(lang): text for lang, text in found.items() if isinstance(text, str) and text.strip()}


def translator_of(md: Mapping[str, Any]) -> str | None:
    meta = md.get("meta") or {}
    return meta.get("translator", md.get("translator"))


@dataclass
class QueryVersions:
    """Every text query in every language it exists in: its original and its translations.

    slots: the languages, one per slot (the same list for the split CLC-C is trained on and the one
    it is applied to); embeddings (R, D): every version's embedding; rows (Q, L): row of query q's
    version in slot l, -1 where there is none; own (Q,): the slot of each query's original.
    """

    slots: list[str]
    embeddings: Any
    rows: np.ndarray
    own: np.ndarray

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.own = np.asarray(self.own, dtype=np.int64)
        if self.rows.ndim != 2 or self.rows.shape[1] != len(self.slots) or len(self.own) != len(self.rows):
            raise ValueError("rows must be (queries, slots) and own (queries,)")
        if not bool((self.rows[np.arange(len(self.own)), self.own] >= 0).all()):
            raise ValueError("every query needs its original in its own slot")

    @property
    def translated(self) -> np.ndarray:
        """(Q,) bool: the query has at least one translation."""
        return (self.rows >= 0).sum(1) > 1


def version_scores(versions: QueryVersions, embeddings: torch.Tensor, queries: torch.Tensor,
                   images: torch.Tensor) -> torch.Tensor:
    """Cosines (L, len(queries), C) of each query's versions against `images` (unit rows); NaN where a
    version is missing. `embeddings` are the versions' unit rows, on the images' device."""
    rows = torch.from_numpy(versions.rows).to(images.device)[queries]  # (q, L)
    present = rows >= 0
    scores = torch.einsum("qld,cd->lqc", embeddings[rows.clamp(min=0)], images)
    return scores.masked_fill(~present.T[..., None], float("nan"))


def _own_scores(scores: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """(q, C): each query's original-language row of (L, q, C) scores."""
    return scores.gather(0, own[None, :, None].expand(1, *scores.shape[1:]))[0]


@dataclass
class CLCResult:
    """Text -> image recall@K per query language: the query alone ("plain"), CLC-A and CLC-C
    (when a classifier was given), over that language's queries that have translations, against the
    images that have a caption in that language. Chance: min(K, C) / C for C images."""

    recall: dict[str, dict[str, dict[int, float]]]  # language -> method -> K -> percent
    chance: dict[str, dict[int, float]]
    num_queries: dict[str, int]
    num_images: dict[str, int]
    methods: list[str]
    ks: tuple[int, ...]
    slots: list[str] = field(default_factory=list)

    def to_metrics(self) -> dict[str, Any]:
        per_language = {}
        for lang, by_method in self.recall.items():
            per_language[lang] = {
                **{m: {f"R@{k}": figure(by_method[m][k], self.chance[lang][k]) for k in self.ks} for m in self.methods},
                "num_queries": self.num_queries[lang], "num_images": self.num_images[lang]}
        averages = {}
        if self.recall:
            for m in self.methods:
                averages[m] = {f"R@{k}": figure(float(np.mean([r[m][k] for r in self.recall.values()])),
                                                float(np.mean([self.chance[lang][k] for lang in self.recall])))
                               for k in self.ks}
        return {"text_to_image": per_language, "average_over_languages": averages}


def clc_text_to_image(image_emb: Any, versions: QueryVersions, query_image: Any, query_languages: Sequence[str],
                      classifier: CLCClassifier | None = None, ks: Sequence[int] = CLC_KS,
                      chunk_size: int = DEFAULT_CHUNK_SIZE, device: torch.device | str | None = None) -> CLCResult:
    """SMALR's cross-lingual consistency for text -> image retrieval, ranked in chunks.

    image_emb (I, D); versions: the queries' versions (see `QueryVersions`); query_image (Q,): row of
    each query's image; query_languages (Q,). Language l is evaluated as in `cross_modal_recall`:
    against the images that have at least one query in l, with l's queries that have at least one
    translation as the queries. Each chunk scores (L, chunk, C) and reduces it to ranks at once, so
    memory is about chunk_size x C floats: chunk = chunk_size / L, or chunk_size / 32 with a
    classifier (its hidden layer holds chunk x C x 32 activations).
    """
    images_all = normalised(image_emb, device)
    dev = images_all.device
    emb = normalised(versions.embeddings, dev)
    query_image = np.asarray(query_image, dtype=np.int64)
    query_languages = np.asarray([str(x) for x in query_languages])
    if not (len(query_image) == len(query_languages) == len(versions.rows)):
        raise ValueError("query_image, query_languages and versions must describe the same queries")
    ks = tuple(int(k) for k in ks)
    methods = ["plain", "clc_a"] + (["clc_c"] if classifier is not None else [])
    n_slots = len(versions.slots)
    step = max(1, chunk_size // max(n_slots, classifier.hidden.out_features if classifier is not None else 1))
    own = torch.from_numpy(versions.own).to(dev)
    translated = versions.translated
    recall, chance, num_queries, num_images = {}, {}, {}, {}
    for lang in sorted(set(query_languages.tolist())):
        in_language = query_languages == lang
        queries = np.flatnonzero(in_language & translated)
        if not len(queries):
            continue
        image_rows = np.unique(query_image[in_language])
        local = {int(r): i for i, r in enumerate(image_rows)}
        images = images_all[torch.from_numpy(image_rows).to(dev)]
        hits = {m: {k: 0 for k in ks} for m in methods}
        for chunk in query_chunks(len(queries), step):
            q = torch.from_numpy(queries[chunk]).to(dev)
            target = torch.tensor([local[int(r)] for r in query_image[queries[chunk]]], device=dev)[:, None]
            scores = version_scores(versions, emb, q, images)
            combined = {"plain": _own_scores(scores, own[q]), "clc_a": clc_average(scores)}
            if classifier is not None:
                combined["clc_c"] = clc_classifier_scores(classifier, scores.cpu()).to(dev)
            for m, s in combined.items():
                positive = s.gather(1, target)
                rank = best_positive_rank(s, positive, torch.ones_like(positive, dtype=torch.bool))
                for k in ks:
                    hits[m][k] += int((rank < k).sum())
        recall[lang] = {m: {k: 100.0 * hits[m][k] / len(queries) for k in ks} for m in methods}
        chance[lang] = {k: 100.0 * min(k, len(image_rows)) / len(image_rows) for k in ks}
        num_queries[lang], num_images[lang] = int(len(queries)), int(len(image_rows))
    return CLCResult(recall, chance, num_queries, num_images, methods, ks, list(versions.slots))


def fit_clc_classifier(image_emb: Any, versions: QueryVersions, query_image: Any,
                       max_queries: int = CLC_VAL_MAX_QUERIES, seed: int = 0,
                       **train_options: Any) -> tuple[CLCClassifier, dict[str, int]]:
    """CLC-C fitted on a (validation) split: all its queries (or a seeded sample of `max_queries`)
    against the images they describe, full batch, as `clc.train_clc_classifier` does."""
    query_image = np.asarray(query_image, dtype=np.int64)
    queries = np.arange(len(query_image))
    if len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(queries, size=max_queries, replace=False))
    image_rows, target = np.unique(query_image[queries], return_inverse=True)
    images = normalised(image_emb)[torch.from_numpy(image_rows)]
    scores = version_scores(versions, normalised(versions.embeddings), torch.from_numpy(queries), images)
    positive = torch.zeros(scores.shape[1:], dtype=torch.bool)
    positive[torch.arange(len(queries)), torch.from_numpy(target.reshape(-1))] = True
    classifier = train_clc_classifier(scores, positive, **train_options)
    return classifier, {"queries": int(len(queries)), "images": int(len(image_rows))}


def build_query_versions(captions: SplitCaptions, original_emb: Any, slots: Sequence[str],
                         embed_texts: Callable[[list[str]], Any]) -> QueryVersions:
    """QueryVersions of a split: each caption (embedded as `original_emb`) and its translations
    from `meta.translations`, embedded by `embed_texts(list of raw texts) -> (n, D)`."""
    slot_of = {lang: i for i, lang in enumerate(slots)}
    n = len(captions.keys)
    rows = np.full((n, len(slots)), -1, dtype=np.int64)
    own = np.array([slot_of[str(lang)] for lang in captions.languages], dtype=np.int64)
    rows[np.arange(n), own] = np.arange(n)
    texts: list[str] = []
    for q, md in enumerate(captions.metas):
        for lang, text in sorted(translations_of(md).items()):
            if lang in slot_of and slot_of[lang] != own[q]:
                rows[q, slot_of[lang]] = n + len(texts)
                texts.append(text)
    original = np.asarray(original_emb, dtype=np.float32)
    extra = np.asarray(embed_texts(texts), dtype=np.float32).reshape(len(texts), -1) if texts else \
        np.zeros((0, original.shape[1]), np.float32)
    return QueryVersions(list(slots), np.concatenate([original, extra]), rows, own)


def _split_slots(captions: SplitCaptions) -> set[str]:
    return {str(lang) for lang in captions.languages} | {lang for md in captions.metas for lang in translations_of(md)}


# ---------------------------------------------------------------------------------------------
# the command


def evaluate(checkpoint: str | Path, shards: str | Path, out: str | Path, split: str = "test",
             batch_size: int = 128, human_languages: list[str] | None = None, word_translation: bool = True,
             csls: bool = False, word_representation: str = "input", word_alignment: str = "generalized",
             clc: bool = True, clc_train_split: str = "val", progress: bool = False) -> dict[str, Any]:
    """Every metric of the model at `checkpoint` on `split` of the preprocessed dataset `shards`.

    Word translation reads the model's *input word embeddings* by default
    (`word_representation="input"`): Globetrotter 3.4 fits Procrustes "on the learned word
    embeddings ... from the word embeddings of one language to the word embeddings of another", and
    B.3 names them: the V x d word-embedding matrix phi_w that encodes tokens before the
    transformer (the one table shared by all languages, which the tied cloze head also trains).
    Each language's table holds the rows of the tokens its test captions use. "contextual" averages
    the encoder's last-layer hidden states of each token over its occurrences in the language's
    captions instead, a variant the paper does not use.
    """
    if word_representation not in WORD_REPRESENTATIONS:
        raise ValueError(f"word_representation must be one of {WORD_REPRESENTATIONS}, got {word_representation!r}")
    if word_alignment not in WORD_ALIGNMENTS:
        raise ValueError(f"word_alignment must be one of {WORD_ALIGNMENTS}, got {word_alignment!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be a positive number of sentences or images")
    from dist_train.train.data import check_translation_groups

    root, out = location(shards), Path(out)
    steps = _Steps(progress, 6 + bool(word_translation))
    steps.begin(f"reading the {split} captions")
    captions = read_split_captions(root, split)
    # before the model is loaded: a split without translations is a config error, not a metric of 0 queries
    check_translation_groups(root, split, groups=captions.groups, languages=captions.languages)
    steps.begin("loading the model")
    model, config = load_model(checkpoint)
    check_vocabulary(config, root, checkpoint)
    mc = config["model_config"]
    vocab = type("V", (), {"bos_id": mc["bos_id"], "eos_id": mc["eos_id"], "pad_id": mc["pad_id"]})
    max_tokens = config.get("data", {}).get("max_tokens", mc.get("max_length", 64))
    image_size = config.get("data", {}).get("image_size", 224)

    with torch.no_grad():
        steps.begin(f"sentence translation ({len(captions.keys)} sentences)")
        text_text = embed_tokens(lambda t: model.encode_text(t)["text_text"], captions.tokens, vocab, max_tokens,
                                 batch_size)
        metrics: dict[str, Any] = translation_metrics(text_text, captions)
        scripts = _scripts_by_language(captions)
        # the same question asked of one target language at a time: blind to grouping by language
        steps.begin("bitext retrieval per language pair")
        metrics["bitext_retrieval"] = bitext_retrieval(text_text, captions.groups, captions.languages).to_metrics()
        metrics["bitext_retrieval"]["disjoint_script_pairs"] = _disjoint_average(
            metrics["bitext_retrieval"]["by_language_pair"], scripts)
        if metrics["bitext_retrieval"]["accuracy"]["value"] is None:
            metrics["bitext_retrieval"]["skipped"] = "no caption of the split has a translation in another language"
        if word_translation:
            steps.begin(f"word translation ({word_alignment} Procrustes over {len(set(captions.languages))} languages)")
            metrics["word_translation"] = _word_translation_section(
                model, mc, captions, max_tokens, batch_size, csls, word_representation, word_alignment)
        steps.begin("image-text recall")
        if getattr(model, "has_images", False):
            image_ids = sorted(set(captions.image_ids))
            index = {image_id: i for i, image_id in enumerate(image_ids)}
            images = read_split_images(root, split, image_ids, image_size)
            image_emb = embed_batches(lambda x: model.encode_image(x)["image_cross"], len(images),
                                      lambda idx: images[idx], batch_size)
            del images
            text_cross = embed_tokens(lambda t: model.encode_text(t)["text_cross"], captions.tokens, vocab,
                                      max_tokens, batch_size)
            text_image = [index[i] for i in captions.image_ids]
            cross = cross_modal_recall(image_emb, text_cross, text_image, captions.languages,
                                       human_languages=human_languages)
            metrics["cross_modal"] = cross.to_metrics()
            if metrics["cross_modal"]["human_average_mean_recall"]["value"] is None:
                metrics["cross_modal"]["human_average_mean_recall"] = {"skipped": (
                    f"none of the human-captioned languages given ({', '.join(human_languages)}) has captions "
                    "in the split" if human_languages else "no human-captioned languages given (--human-languages)")}
            if clc and any(translations_of(md) for md in captions.metas):
                metrics["cross_modal"]["clc"] = _clc_section(
                    model, root, split, clc_train_split, captions, image_emb, text_cross, text_image, vocab,
                    max_tokens, image_size, batch_size)
        else:
            metrics["cross_modal"] = {"skipped": "the model has no image network (text-only)"}
    steps.begin("writing the report")
    out.mkdir(parents=True, exist_ok=True)
    pairs = metrics["sentence_translation"]["by_language_pair"]
    heatmap = save_pair_heatmap(pairs["value"], pairs["languages"], out / "sentence_translation_pairs.png",
                                title="Sentence translation by retrieval",
                                chance=metrics["sentence_translation"]["retrieved_positives"]["chance"])
    images_of = {"sentence_translation": heatmap.name}
    wt = metrics.get("word_translation", {})
    if "after_alignment" in wt:
        after = wt["after_alignment"]["all_tokens_recall@10"]
        word_map = save_pair_heatmap(after["by_language_pair"]["value"], after["by_language_pair"]["languages"],
                                     out / "word_translation_pairs.png",
                                     title="Word translation recall@10 after alignment",
                                     colorbar_label="% of ground-truth pairs in the top 10",
                                     chance=after["macro"]["chance"])
        images_of["word_translation"] = word_map.name
    metrics["meta"] = {"checkpoint": str(checkpoint), "shards": str(root), "split": split,
                       "sentences": len(captions.keys), "languages": sorted(set(captions.languages))}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    report_metrics = {k: v for k, v in metrics.items() if k != "meta"}
    write_markdown_report(report_metrics, out / "report.md", title=f"Evaluation of {checkpoint}", images=images_of)
    write_tensorboard(report_metrics, {k: out / v for k, v in images_of.items()}, out / "tb", step=_step_of(checkpoint))
    steps.close()
    return metrics


class _Steps:
    """The evaluation's steps as one progress bar on a terminal and a log line each: some take minutes on
    large splits."""

    def __init__(self, enabled: bool, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="eval", unit="step", disable=None if enabled else True, dynamic_ncols=True,
                        bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}] {postfix}")
        self.total, self.done, self.started = total, 0, False

    def begin(self, what: str) -> None:
        if self.started:
            self.done += 1
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(what)
        # logged from the first measurement on: the steps before it check the input, and a bad input
        # ends in its one error line alone
        log.log(logging.INFO if self.done >= 2 else logging.DEBUG, "eval step %d/%d: %s", self.done + 1,
                self.total, what)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def check_vocabulary(config: Mapping[str, Any], root: Path, checkpoint: str | Path) -> None:
    """The dataset's token ids mean what they meant in training: its spm.model is the one the model was
    trained with (the sha256 an export records), or, for a model without that record, has as many pieces
    as the model's vocabulary. A ConfigError naming both otherwise (ids of another vocabulary give
    figures, but meaningless ones)."""
    from dist_train.config import ConfigError
    from dist_train.train.engine import vocab_sha256

    spm = location(root) / "spm.model"
    if not spm.is_file():
        return
    found, trained = vocab_sha256(spm), config.get("vocab_sha256")
    expected = config.get("model_config", {}).get("vocab_size")
    from dist_train.preprocess.vocab import vocab_size_of

    pieces = vocab_size_of(spm.read_bytes())
    if trained and trained != found:
        raise ConfigError(f"--shards {root}: its vocabulary {spm} (sha256 {found[:12]}, {pieces} pieces) is not the "
                          f"one {checkpoint} was trained with (sha256 {trained[:12]}"
                          f"{f', {expected} pieces' if expected else ''}); evaluate on a dataset tokenized with "
                          "that vocabulary (dist-train preprocess vocab.model=EXPORT/spm.model)")
    if not trained and expected is not None and expected != pieces:
        raise ConfigError(f"--shards {root}: its vocabulary {spm} has {pieces} pieces and {checkpoint} was trained "
                          f"with {expected}; evaluate on a dataset tokenized with the model's vocabulary")


def _step_of(checkpoint: str | Path) -> int:
    """The training step of a checkpoint (from its tag), so evaluations line up with training logs."""
    import re

    path = Path(checkpoint)
    tag = (path / "latest").read_text().strip() if (path / "latest").is_file() else path.name
    found = re.search(r"step(\d+)", tag)
    return int(found.group(1)) if found else 0


def write_tensorboard(metrics: Mapping[str, Any], images: Mapping[str, Path], log_dir: Path, step: int) -> None:
    """Every figure (and its chance) as a scalar named by its path in metrics.json, heatmaps as images.
    Language-pair matrices are left to the heatmaps."""
    from dist_train.eval.figures import is_figure, is_pair_matrix
    from dist_train.train.tensorboard import TensorBoardLogger

    scalars: dict[str, float] = {}

    def walk(node: Any, path: list[str]) -> None:
        if is_figure(node):
            for key in ("value", "chance"):
                if node[key] is not None:
                    scalars["/".join(path) + ("" if key == "value" else "_chance")] = node[key]
        elif isinstance(node, Mapping) and not is_pair_matrix(node):
            for key, child in node.items():
                walk(child, [*path, str(key)])

    walk(metrics, ["eval"])
    tb = TensorBoardLogger(log_dir, enabled=True)
    tb.scalars(scalars, step)
    for name, png in images.items():
        tb.image(f"eval/{name}_pairs", png, step)
    tb.close()


def _word_translation_section(model: torch.nn.Module, mc: Mapping[str, Any], captions: SplitCaptions,
                              max_tokens: int, batch_size: int, csls: bool, representation: str,
                              alignment: str) -> dict[str, Any]:
    encoder = getattr(model, "text_encoder", None)
    embeddings = getattr(encoder, "word_embeddings", None)
    if representation == "input" and embeddings is None:
        return {"skipped": "the model has no text_encoder.word_embeddings to read"}
    drop = sorted(special_token_ids(mc))
    if representation == "input":
        tables = input_embedding_tables(embeddings.weight, captions.tokens, captions.languages, drop)
    else:
        tables = contextual_embedding_tables(lambda t: model.encode_text(t)["hidden"], captions.tokens,
                                             captions.languages, max_tokens, mc["bos_id"], mc["eos_id"],
                                             mc["pad_id"], drop, batch_size)
    if len(tables) < 2:
        return {"skipped": f"word translation needs captions in two languages or more, found {sorted(tables)}"}
    return word_translation_metrics(tables, captions.tokens, captions.groups, captions.languages, drop, csls,
                                    alignment, representation)


def _clc_section(model: torch.nn.Module, root: Path, split: str, train_split: str, captions: SplitCaptions,
                 image_emb: np.ndarray, text_cross: np.ndarray, text_image: list[int], vocab: Any,
                 max_tokens: int, image_size: int, batch_size: int) -> dict[str, Any]:
    spm_path = root / "spm.model"
    if not spm_path.is_file():
        return {"skipped": f"no sentencepiece model at {spm_path} to tokenize the translated queries"}
    from dist_train.preprocess.vocab import load_vocab

    sp = load_vocab(spm_path.read_bytes())

    def embed_texts(texts: list[str]) -> np.ndarray:
        ids = [np.asarray(x, dtype=np.int64) for x in sp.encode(texts)]
        return embed_tokens(lambda t: model.encode_text(t)["text_cross"], ids, vocab, max_tokens, batch_size)

    val, reason = None, None
    try:
        val = read_split_captions(root, train_split)
    except FileNotFoundError:
        reason = f"no {train_split!r} split to train the classifier on"
    if val is not None and not any(translations_of(md) for md in val.metas):
        val, reason = None, (f"the {train_split!r} split has no translated queries (meta.translations); "
                             f"preprocess it with translate.query_splits including {train_split}")
    slots = sorted(_split_slots(captions) | (_split_slots(val) if val is not None else set()))
    versions = build_query_versions(captions, text_cross, slots, embed_texts)
    classifier, trained_on = None, None
    if val is not None:
        val_image_ids = sorted(set(val.image_ids))
        val_index = {image_id: i for i, image_id in enumerate(val_image_ids)}
        val_images = read_split_images(root, train_split, val_image_ids, image_size)
        val_image_emb = embed_batches(lambda x: model.encode_image(x)["image_cross"], len(val_images),
                                      lambda idx: val_images[idx], batch_size)
        del val_images
        val_text = embed_tokens(lambda t: model.encode_text(t)["text_cross"], val.tokens, vocab, max_tokens,
                                batch_size)
        val_versions = build_query_versions(val, val_text, slots, embed_texts)
        with torch.enable_grad():
            classifier, trained_on = fit_clc_classifier(val_image_emb, val_versions,
                                                        [val_index[i] for i in val.image_ids])
    result = clc_text_to_image(image_emb, versions, text_image, captions.languages, classifier=classifier)
    section = result.to_metrics()
    section["languages"] = list(slots)
    section["translation_languages"] = sorted({lang for md in captions.metas for lang in translations_of(md)})
    section["translators"] = sorted({str(t) for md in captions.metas if (t := translator_of(md))})
    section["queries_with_translations"] = int(versions.translated.sum())
    if classifier is None:
        section["clc_c_skipped"] = reason
    else:
        section["clc_c_trained_on"] = f"{train_split}: {trained_on['queries']} queries, {trained_on['images']} images"
        section["clc_c_selected_iteration"] = classifier.selected_iteration  # 0: CLC-A's weighting was best
    return section


def translation_metrics(text_text: Any, captions: SplitCaptions) -> dict[str, Any]:
    """Sentence translation under both protocols, each with its mean over disjoint-script pairs.

    `sentence_translation` (the headline) ranks the sentences of the query's other languages only, as
    the published code's retrieval does; `sentence_translation_pooled` ranks all sentences, as the
    paper's section 5.2 reads, where any grouping of sentences by language pushes the figure below chance.
    """
    scripts = _scripts_by_language(captions)  # pairs of languages that share no script: no written word in common
    metrics: dict[str, Any] = {}
    for key, exclude in (("sentence_translation", True), ("sentence_translation_pooled", False)):
        section = sentence_translation(text_text, captions.groups, captions.languages,
                                       exclude_same_language=exclude).to_metrics()
        section["disjoint_script_pairs"] = _disjoint_average(section["by_language_pair"], scripts)
        if not section["num_queries"]:
            section["skipped"] = ("no caption of the split has a translation among the candidates (its translation "
                                  "groups hold one language each)")
        metrics[key] = section
    return metrics


def _scripts_by_language(captions: SplitCaptions) -> dict[str, set[str]]:
    texts: dict[str, list[str]] = collections.defaultdict(list)
    for lang, text in zip(captions.languages, captions.texts):
        texts[lang].append(text)
    return {lang: scripts_of(t) for lang, t in texts.items()}


def _disjoint_average(pairs: dict[str, Any], scripts: dict[str, set[str]]) -> dict[str, Any]:
    """Mean over ordered language pairs that share no script, with its chance."""
    langs = pairs["languages"]
    values, chances = [], []
    for i, a in enumerate(langs):
        for j, b in enumerate(langs):
            if a != b and not (scripts.get(a, set()) & scripts.get(b, set())):
                if pairs["value"][i][j] is not None:
                    values.append(pairs["value"][i][j])
                    chances.append(pairs["chance"][i][j])
    if not values:
        # "value" and "chance" stay (as None) for readers that test them; "skipped" says why there is none
        if len(langs) < 2:
            why = f"the split has fewer than two languages ({', '.join(langs) or 'none'})"
        elif not any(a != b and not (scripts.get(a, set()) & scripts.get(b, set())) for a in langs for b in langs):
            why = f"every two of the split's languages share a script ({', '.join(langs)})"
        else:
            why = "no caption has a translation in a language of a disjoint script"
        return {"value": None, "chance": None, "pairs": 0, "skipped": why}
    return {"value": float(np.mean(values)), "chance": float(np.mean(chances)), "pairs": len(values)}


def _has(fig: Any) -> bool:
    """A figure with both numbers (a figure that could not be computed holds None, or is a skipped entry)."""
    return isinstance(fig, Mapping) and fig.get("value") is not None and fig.get("chance") is not None


def summary_line(metrics: dict[str, Any]) -> str:
    """One line of the headline figures that exist; figures that could not be computed are named as
    such (their reasons are in metrics.json and the report), never formatted as numbers."""
    parts: list[str] = []
    skipped: list[str] = []
    st = metrics.get("sentence_translation", {})
    overall = st.get("retrieved_positives")
    if _has(overall):
        parts.append(f"sentence translation {overall['value']:.1f}% (chance {overall['chance']:.1f})")
    else:
        skipped.append("sentence translation")
    disjoint = st.get("disjoint_script_pairs")
    if _has(disjoint):
        parts.append(f"disjoint scripts {disjoint['value']:.1f}% (chance {disjoint['chance']:.1f})")
    pooled = metrics.get("sentence_translation_pooled")
    if pooled is not None and _has(pooled.get("retrieved_positives")):
        parts.append(f"pooled with the own language {pooled['retrieved_positives']['value']:.1f}% "
                     f"(chance {pooled['retrieved_positives']['chance']:.1f})")
    bitext = metrics.get("bitext_retrieval")
    if bitext is not None:
        own = bitext.get("own_language_neighbours")
        if _has(bitext.get("accuracy")) and _has(own):
            parts.append(f"per-pair top-1 {bitext['accuracy']['value']:.1f}% (chance {bitext['accuracy']['chance']:.1f}), "
                         f"own-language neighbours {own['value']:.0f}% (chance {own['chance']:.0f})")
        else:
            skipped.append("per-pair top-1")
    wt = metrics.get("word_translation", {})
    if "after_alignment" in wt:
        before = wt["before_alignment"]["all_tokens_recall@10"]["macro"]
        after = wt["after_alignment"]["all_tokens_recall@10"]["macro"]
        if _has(before) and _has(after):
            parts.append(f"word translation R@10 {before['value']:.1f}% -> {after['value']:.1f}% aligned "
                         f"(chance {after['chance']:.1f})")
        else:
            skipped.append("word translation")
    elif "skipped" in wt:
        skipped.append("word translation")
    cm = metrics.get("cross_modal", {})
    if _has(cm.get("average_mean_recall")):
        parts.append(f"cross-modal mean recall {cm['average_mean_recall']['value']:.1f} "
                     f"(chance {cm['average_mean_recall']['chance']:.1f})")
    averages = cm.get("clc", {}).get("average_over_languages", {})
    if "clc_a" in averages and all(_has(averages[m].get("R@1")) for m in averages):
        parts.append(f"text->image R@1 {averages['plain']['R@1']['value']:.1f} alone, "
                     f"{averages['clc_a']['R@1']['value']:.1f} CLC-A"
                     + (f", {averages['clc_c']['R@1']['value']:.1f} CLC-C" if "clc_c" in averages else ""))
    if skipped:
        parts.append(f"not computed: {', '.join(skipped)} (see metrics.json)")
    return "; ".join(parts)


__all__ = ["CLCResult", "QueryVersions", "build_query_versions", "clc_text_to_image", "contextual_embedding_tables",
           "evaluate", "fit_clc_classifier", "input_embedding_tables", "load_model", "scripts_of",
           "special_token_ids", "summary_line", "translation_metrics", "translations_of", "version_scores", "word_translation_metrics"]
