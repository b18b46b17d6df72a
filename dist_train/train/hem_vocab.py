"""SMALR's word vocabulary: words per language, their FastText vectors, PCA, and the fitted HEM artifact.

SMALR works on words of each language, not on the shared BPE pieces the rest of the project uses.
The word unit: captions are NFKC-normalised and lower-cased; languages written with spaces are
split into runs of word characters (`\\w+`, punctuation dropped); languages written without spaces
(ja, zh, th, ...) have no word boundaries to split on, so their words are the pieces of the
dataset's sentencepiece model (learned on all captions, they are the closest thing to words this
project has; character unigrams would be the other honest choice and make every word shared by
accident). Word vectors are FastText's: a `.vec` file per language when given (the paper's
pretrained monolingual vectors), otherwise gensim's FastText trained on the training captions of
that language. The fitted vocabulary, vectors and latent assignment are written beside the run
(`RUN/hem/`) so resumed runs and evaluation reuse exactly the same ones.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

UNSEGMENTED_LANGUAGES = ("ja", "zh", "th", "lo", "km", "my", "bo")
# Fixed word ids (see dist_train.models.hem): padding, MCLM's mask, words outside the vocabulary.
PAD, MASK, UNK = 0, 1, 2
SPECIAL_WORDS = 3
_WORD = re.compile(r"\w+")


class WordSplitter:
    """Caption text -> words, per language (see the module docstring for the unit)."""

    def __init__(self, spm_model: str | Path | bytes | None = None,
                 unsegmented: Sequence[str] = UNSEGMENTED_LANGUAGES):
        self.unsegmented = frozenset(unsegmented)
        self._sp = None
        if spm_model is not None:
            import sentencepiece as spm

            data = spm_model if isinstance(spm_model, bytes) else Path(spm_model).read_bytes()
            self._sp = spm.SentencePieceProcessor(model_proto=data)

    def __call__(self, text: str, language: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        if language in self.unsegmented:
            if self._sp is None:
                raise ValueError(f"language {language!r} is written without spaces: its words are sentencepiece "
                                 "pieces, give WordSplitter the dataset's spm.model")
            sp = self._sp
            pieces = (sp.id_to_piece(i).replace("\u2581", "") for i in sp.encode(text)
                      if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i)))  # bytes: rare characters
            return [p for p in pieces if _WORD.search(p)]
        return _WORD.findall(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        """The caption text of stored sentencepiece ids (what the training batches carry)."""
        if self._sp is None:
            raise ValueError("decoding token ids needs the dataset's spm.model")
        return self._sp.decode([int(i) for i in token_ids])


def read_vec(path: str | Path, words: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """FastText's text format (`N DIM` header, then `word v1 ... vDIM` lines); only `words` if given."""
    wanted = set(words) if words is not None else None
    vectors: dict[str, np.ndarray] = {}
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().split()
        if len(header) != 2 or not all(x.isdigit() for x in header):
            raise ValueError(f"{path}: not a FastText .vec file (first line should be 'COUNT DIM', got {header[:3]})")
        dim = int(header[1])
        for line_no, line in enumerate(f, start=2):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) != dim + 1:
                raise ValueError(f"{path}:{line_no}: expected a word and {dim} numbers, got {len(parts) - 1} numbers")
            word = unicodedata.normalize("NFKC", parts[0]).lower()
            if (wanted is None or word in wanted) and word not in vectors:
                vectors[word] = np.asarray(parts[1:], dtype=np.float32)
    return vectors, dim


def train_fasttext(sentences: list[list[str]], dim: int, epochs: int, seed: int,
                   buckets: int = 200_000) -> Callable[[str], np.ndarray]:
    """gensim FastText on one language's tokenised captions; returns word -> vector (subwords cover
    any word, so every vocabulary word gets one). One worker: the result depends only on the seed.
    `buckets` bounds the subword table (gensim's default, 2 M x dim floats, is gigabytes at 300-d)."""
    from gensim.models import FastText

    logging.getLogger("gensim").setLevel(logging.WARNING)  # it logs every epoch of every language
    model = FastText(vector_size=dim, window=5, min_count=1, workers=1, seed=seed, min_n=2, max_n=5, sg=1,
                     bucket=buckets)
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=epochs)
    return lambda word: np.asarray(model.wv[word], dtype=np.float32)


def pca_reduce(matrix: np.ndarray, dim: int) -> np.ndarray:
    """Rows projected on their top `dim` principal components (centred), as the paper's 300 -> 50."""
    x = torch.as_tensor(matrix, dtype=torch.float64)
    x = x - x.mean(0, keepdim=True)
    dim = min(dim, x.shape[0], x.shape[1])
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    reduced = x @ v[:dim].T
    return (reduced / reduced.std().clamp(min=1e-8)).to(torch.float32).numpy()  # unit overall scale


@dataclass
class WordVocabulary:
    """Words per language in frequency order; global ids follow the special ids, language by language."""

    languages: list[str]
    words: dict[str, list[str]]  # language -> words, most frequent first
    counts: dict[str, list[int]]
    min_count: int = 1
    unsegmented: list[str] = field(default_factory=lambda: list(UNSEGMENTED_LANGUAGES))

    def __post_init__(self) -> None:
        self.offsets: dict[str, int] = {}
        offset = SPECIAL_WORDS
        for lang in self.languages:
            self.offsets[lang] = offset
            offset += len(self.words[lang])
        self.size = offset
        self._index = {lang: {w: self.offsets[lang] + i for i, w in enumerate(self.words[lang])}
                       for lang in self.languages}

    @classmethod
    def from_counts(cls, counts: Mapping[str, Counter], min_count: int = 1,
                    unsegmented: Sequence[str] = UNSEGMENTED_LANGUAGES) -> "WordVocabulary":
        """Frequency thresholding (the paper's baseline) drops words seen fewer than `min_count` times."""
        languages = sorted(counts)
        words, kept = {}, {}
        for lang in languages:
            ranked = sorted(((w, n) for w, n in counts[lang].items() if n >= min_count), key=lambda x: (-x[1], x[0]))
            words[lang], kept[lang] = [w for w, _ in ranked], [n for _, n in ranked]
        return cls(languages, words, kept, min_count, list(unsegmented))

    def word_language(self) -> np.ndarray:
        """(size,) language index of every id; -1 for the special ids."""
        out = np.full(self.size, -1, dtype=np.int64)
        for i, lang in enumerate(self.languages):
            out[self.offsets[lang]:self.offsets[lang] + len(self.words[lang])] = i
        return out

    def word_rank(self) -> np.ndarray:
        """(size,) frequency rank of every word within its language; -1 for the special ids."""
        out = np.full(self.size, -1, dtype=np.int64)
        for lang in self.languages:
            out[self.offsets[lang]:self.offsets[lang] + len(self.words[lang])] = np.arange(len(self.words[lang]))
        return out

    def encode(self, words: Sequence[str], language: str) -> list[int]:
        index = self._index.get(language, {})
        return [index.get(w, UNK) for w in words]

    def to_json(self) -> dict:
        return {"languages": self.languages, "words": self.words, "counts": self.counts,
                "min_count": self.min_count, "unsegmented": self.unsegmented}

    @classmethod
    def from_json(cls, data: Mapping) -> "WordVocabulary":
        return cls(list(data["languages"]), {k: list(v) for k, v in data["words"].items()},
                   {k: list(v) for k, v in data["counts"].items()}, int(data["min_count"]), list(data["unsegmented"]))


def word_vectors(vocab: WordVocabulary, sentences: Mapping[str, list[list[str]]], vec_paths: Mapping[str, str],
                 dim: int, epochs: int, seed: int, buckets: int = 200_000) -> np.ndarray:
    """(vocab.size, D) raw word vectors: from `vec_paths[lang]` when given (words missing there get
    small random vectors, counted and logged), else FastText trained on `sentences[lang]`."""
    rows: dict[str, np.ndarray] = {}
    out_dim = None
    rng = np.random.default_rng(seed)
    for lang in vocab.languages:
        words = vocab.words[lang]
        if lang in vec_paths:
            found, d = read_vec(vec_paths[lang], words)
            missing = [w for w in words if w not in found]
            if missing:
                log.warning("%s: %d of %d words have no vector in %s (first: %s); they start random",
                            lang, len(missing), len(words), vec_paths[lang], missing[0])
            table = np.stack([found[w] if w in found else rng.normal(0, 0.1, d).astype(np.float32) for w in words]) \
                if words else np.zeros((0, d), np.float32)
        else:
            d = dim
            vector_of = train_fasttext(sentences[lang], dim, epochs, seed, buckets) if words else None
            table = np.stack([vector_of(w) for w in words]) if words else np.zeros((0, d), np.float32)
        if out_dim is not None and d != out_dim:
            raise ValueError(f"word vectors of {lang} have {d} dimensions, earlier languages {out_dim}: "
                             "give .vec files of one size (or none)")
        out_dim = d
        rows[lang] = table
    matrix = np.zeros((vocab.size, out_dim or dim), np.float32)
    for lang in vocab.languages:
        matrix[vocab.offsets[lang]:vocab.offsets[lang] + len(vocab.words[lang])] = rows[lang]
    return matrix


def pca_per_language(vocab: WordVocabulary, vectors: np.ndarray, dim: int) -> np.ndarray:
    """PCA of each language's (monolingual, unaligned) vectors on its own, as the paper reduces each
    FastText embedding; languages with fewer words than `dim` are zero-padded."""
    out = np.zeros((vocab.size, dim), np.float32)
    for lang in vocab.languages:
        lo, n = vocab.offsets[lang], len(vocab.words[lang])
        if n:
            reduced = pca_reduce(vectors[lo:lo + n], dim)
            out[lo:lo + n, :reduced.shape[1]] = reduced
    return out


def save_artifact(directory: Path, vocab: WordVocabulary, arrays: Mapping[str, np.ndarray], summary: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy.tmp.npy", array)
        (directory / f"{name}.npy.tmp.npy").replace(directory / f"{name}.npy")
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    tmp = directory / "vocab.json.tmp"
    tmp.write_text(json.dumps(vocab.to_json(), ensure_ascii=False))
    tmp.replace(directory / "vocab.json")  # written last: its presence marks a complete artifact


def load_artifact(directory: Path) -> tuple[WordVocabulary, dict[str, np.ndarray], dict]:
    vocab = WordVocabulary.from_json(json.loads((directory / "vocab.json").read_text()))
    arrays = {p.name[:-4]: np.load(p) for p in sorted(directory.glob("*.npy"))}
    return vocab, arrays, json.loads((directory / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# fitting the HEM artifact: vocabulary, vectors, latent assignment


@dataclass
class HemSettings:
    """What the HEM artifact is fitted with (the objective's `hem` section; defaults from the paper)."""

    mode: str = "hybrid"  # hybrid (SMALR) | agnostic (latent vocabulary only, LA) | full (every word specific)
    top_k: int = 5000  # language-specific words per language (hybrid)
    latent_size: int = 40000  # latent tokens before the unused ones are dropped
    word_dim: int = 50  # PCA of the FastText vectors (the paper: 300 -> 50); the PCA-reduction baseline varies it
    min_count: int = 1  # frequency thresholding: words seen fewer times are unknown
    vec_paths: dict[str, str] = field(default_factory=dict)  # language -> FastText .vec; others are trained
    fasttext_dim: int = 300
    fasttext_epochs: int = 10
    fasttext_buckets: int = 200_000  # subword hash buckets of the trained FastText
    explore_p: float = 0.2
    explore_top_m: int = 20
    pretrain_steps: int = 300
    pretrain_batch: int = 128  # sentence pairs per rank and step
    pretrain_lr: float = 1e-3
    pretrain_margin: float = 0.05
    pretrain_hard_negatives: int = 10
    max_words: int = 64  # words per sentence kept
    unsegmented: list[str] = field(default_factory=lambda: list(UNSEGMENTED_LANGUAGES))

    def validate(self, key: str = "objective.hem") -> None:
        from dist_train.config import ConfigError

        if self.mode not in ("hybrid", "agnostic", "full"):
            raise ConfigError(f"config key '{key}.mode' = {self.mode!r}: use hybrid, agnostic or full")
        for name in ("top_k", "latent_size", "word_dim", "min_count", "fasttext_dim", "fasttext_epochs",
                     "explore_top_m", "pretrain_batch", "max_words", "fasttext_buckets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key '{key}.{name}' = {getattr(self, name)!r}: must be at least 1")
        if not 0.0 <= self.explore_p <= 1.0:
            raise ConfigError(f"config key '{key}.explore_p' = {self.explore_p!r}: must be in [0, 1]")
        for lang, path in self.vec_paths.items():
            if not Path(path).is_file():
                raise ConfigError(f"config key '{key}.vec_paths.{lang}' = {path!r}: file not found")


def pad_word_ids(rows: Sequence[Sequence[int]], max_words: int) -> torch.Tensor:
    """Word id rows as (B, T) with PAD = 0 (T = the longest row, at most max_words; at least 1)."""
    width = max(1, min(max_words, max((len(r) for r in rows), default=1)))
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        r = list(r)[:width]
        if r:
            out[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def sentence_pairs(image_ids: Sequence[str], languages: Sequence[str], rng: np.random.Generator,
                   count: int) -> np.ndarray:
    """(count, 2) caption indices: two captions of one image, in two languages where it has two."""
    by_image: dict[str, list[int]] = {}
    for i, image in enumerate(image_ids):
        by_image.setdefault(image, []).append(i)
    images = [members for members in by_image.values() if len(members) > 1]
    if not images:
        raise ValueError("no image has two captions: the latent-assignment pretraining needs sentence pairs")
    out = np.zeros((count, 2), dtype=np.int64)
    for row, g in enumerate(rng.integers(0, len(images), size=count)):
        members = images[g]
        a = members[rng.integers(len(members))]
        others = [m for m in members if m != a and languages[m] != languages[a]] or [m for m in members if m != a]
        out[row] = (a, others[rng.integers(len(others))])
    return out


def pretrain_assignment(word_ids: list[list[int]], image_ids: Sequence[str], languages: Sequence[str],
                        vectors: np.ndarray, word_language: np.ndarray, settings: HemSettings, seed: int,
                        progress: bool = True, embed_dim: int = 512) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """SMALR's pretraining step: learn the latent vocabulary and the word -> latent assignment with the
    triplet loss on averaged latent embeddings of sentence pairs, exploring (p, M); then freeze it.

    Data-parallel over a running process group (each rank draws its own pairs; gradients are averaged),
    so every rank ends with the same assignment. Returns (assignment over all word ids, -1 for ids
    without a language; the latent vectors of every token; the loss per step).
    """
    import torch.distributed as dist
    from tqdm import tqdm

    from dist_train.distributed.gather import is_distributed, rank, world_size
    from dist_train.losses.triplet import triplet_ranking_loss
    from dist_train.models.hem import LatentAssigner

    torch.manual_seed(seed)  # the same initial assigner on every rank
    n_languages = int(word_language.max()) + 1 if (word_language >= 0).any() else 1
    model = LatentAssigner(n_languages, vectors.shape[1], settings.latent_size, embed_dim)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.pretrain_lr)
    vec = torch.as_tensor(vectors, dtype=torch.float32)
    lang = torch.as_tensor(word_language, dtype=torch.long)
    rng = np.random.default_rng([seed, rank()])
    generator = torch.Generator().manual_seed(seed * 7919 + rank())
    image_codes = {image: i for i, image in enumerate(sorted(set(image_ids)))}
    losses = []
    steps = range(settings.pretrain_steps)
    for _ in tqdm(steps, desc="HEM latent assignment", disable=not progress or rank() != 0):
        pairs = sentence_pairs(image_ids, languages, rng, settings.pretrain_batch)
        a = pad_word_ids([word_ids[i] for i in pairs[:, 0]], settings.max_words)
        b = pad_word_ids([word_ids[i] for i in pairs[:, 1]], settings.max_words)
        groups = torch.tensor([image_codes[image_ids[i]] for i in pairs[:, 0]])
        emb_a = model.sentence_embeddings(a, vec, lang, settings.explore_p, settings.explore_top_m, generator)
        emb_b = model.sentence_embeddings(b, vec, lang, settings.explore_p, settings.explore_top_m, generator)
        loss = triplet_ranking_loss(emb_a, emb_b, margin=settings.pretrain_margin,
                                    hard_negatives=settings.pretrain_hard_negatives, group_ids=groups)
        optimiser.zero_grad()
        loss.backward()
        if is_distributed():
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world_size()
        optimiser.step()
        losses.append(float(loss.detach()))
    known = torch.nonzero(lang >= 0).squeeze(1)
    assignment = torch.full((len(word_language),), -1, dtype=torch.long)
    assignment[known] = model.assign(vec[known], lang[known])
    return assignment.numpy(), model.latent.detach().numpy(), losses


def fit_word_vectors(texts: Sequence[str], languages: Sequence[str], split: WordSplitter, settings: HemSettings,
                     seed: int = 0) -> tuple[WordVocabulary, np.ndarray]:
    """The vocabulary of the training captions (frequency-thresholded) and its PCA-reduced word vectors."""
    counts: dict[str, Counter] = {}
    by_language: dict[str, list[list[str]]] = {}
    for text, lang in zip(texts, languages):
        words = split(text, lang)
        counts.setdefault(lang, Counter()).update(words)
        by_language.setdefault(lang, []).append(words)
    vocab = WordVocabulary.from_counts(counts, settings.min_count, settings.unsegmented)
    raw = word_vectors(vocab, by_language, settings.vec_paths, settings.fasttext_dim, settings.fasttext_epochs, seed,
                       settings.fasttext_buckets)
    return vocab, pca_per_language(vocab, raw, settings.word_dim)


def fit_hem_tables(vocab: WordVocabulary, vectors: np.ndarray, word_ids: list[list[int]], image_ids: Sequence[str],
                   languages: Sequence[str], settings: HemSettings, seed: int = 0,
                   embed_dim: int = 512) -> tuple[dict, dict]:
    """Which words are language-specific, and the frozen latent assignment of the others (pretrained on
    the captions' word ids, unused latent tokens dropped). Call on every rank of a running process
    group: the pretraining is data-parallel.

    Returns (arrays, summary); arrays: word_vectors (V, word_dim), word_language, word_specific (row in
    the specific table or -1), word_latent (latent token or -1), specific_vectors, latent_vectors.
    """
    from dist_train.models.hem import drop_unused_latent

    word_language = vocab.word_language()
    rank_in_language = vocab.word_rank()
    if settings.mode == "full":
        specific = word_language >= 0
    elif settings.mode == "hybrid":
        specific = (word_language >= 0) & (rank_in_language < settings.top_k)
    else:
        specific = np.zeros(vocab.size, dtype=bool)
    word_specific = np.full(vocab.size, -1, dtype=np.int64)
    word_specific[specific] = np.arange(int(specific.sum()))
    shared = (word_language >= 0) & ~specific
    word_latent = np.full(vocab.size, -1, dtype=np.int64)
    latent_vectors = np.zeros((0, embed_dim), np.float32)
    losses: list[float] = []
    if shared.any():
        assignment, latent_all, losses = pretrain_assignment(word_ids, image_ids, languages, vectors, word_language,
                                                             settings, seed, embed_dim=embed_dim)
        renumbered, kept = drop_unused_latent(torch.as_tensor(assignment[shared]), torch.as_tensor(latent_all))
        word_latent[shared] = renumbered.numpy()
        latent_vectors = kept.numpy()
    arrays = {"word_vectors": vectors, "word_language": word_language, "word_specific": word_specific,
              "word_latent": word_latent, "specific_vectors": vectors[specific], "latent_vectors": latent_vectors}
    summary = {
        "mode": settings.mode, "languages": vocab.languages, "top_k": settings.top_k, "min_count": settings.min_count,
        "word_dim": settings.word_dim,
        "words_per_language": {lang: len(vocab.words[lang]) for lang in vocab.languages},
        "specific_words": int(specific.sum()), "shared_words": int(shared.sum()),
        "latent_tokens_used": int(latent_vectors.shape[0]), "latent_tokens_before_dropping": settings.latent_size,
        "pretrain_loss_first_last": [losses[0], losses[-1]] if losses else [],
        "word_vectors": {lang: settings.vec_paths.get(lang, f"gensim FastText {settings.fasttext_dim}-d on the "
                                                             "training captions") for lang in vocab.languages},
    }
    return arrays, summary
