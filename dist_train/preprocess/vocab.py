"""The shared sentencepiece vocabulary over all languages (Globetrotter uses one BPE vocabulary).

Languages are sampled with temperature so that small languages are not drowned by large ones
(q_l proportional to p_l ** (1 / T), as in XLM and mBERT-style multilingual vocabularies).
"""

from __future__ import annotations

import io
import random
from typing import Mapping

import sentencepiece as spm

# Fixed ids: the model code relies on them (padding masks, cloze masking).
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MASK_PIECE = "<mask>"


def language_quotas(counts: Mapping[str, int], temperature: float, total: int) -> dict[str, int]:
    """How many sentences each language contributes to a sample of `total` sentences."""
    languages = sorted(lang for lang, n in counts.items() if n > 0)
    if not languages:
        return {}
    n_all = sum(counts[lang] for lang in languages)
    weights = {lang: (counts[lang] / n_all) ** (1.0 / temperature) for lang in languages}
    norm = sum(weights.values())
    return {lang: max(1, round(total * weights[lang] / norm)) for lang in languages}


def balanced_sample(captions: Mapping[str, list[str]], temperature: float, max_sentences: int,
                    seed: int = 0) -> tuple[list[str], dict[str, int]]:
    """Temperature-balanced sentences for the trainer; a language short of its quota is repeated
    (whole passes over its captions, then a random remainder). Deterministic from `seed`."""
    counts = {lang: len(texts) for lang, texts in captions.items()}
    total = min(max_sentences, sum(counts.values()))
    quotas = language_quotas(counts, temperature, total)
    rng = random.Random(seed)
    sample: list[str] = []
    for lang, quota in quotas.items():
        texts = sorted(captions[lang])  # input order must not change the result
        repeats, rest = divmod(quota, len(texts))
        sample.extend(texts * repeats)
        sample.extend(rng.sample(texts, rest))
    rng.shuffle(sample)
    return sample, quotas


def train_vocab(sentences: list[str], size: int, model_type: str = "bpe", character_coverage: float = 0.9995,
                seed: int = 0, num_threads: int = 1) -> bytes:
    """Train a sentencepiece model on `sentences` and return its serialized proto.

    `size` is a soft limit: a small corpus yields fewer pieces rather than an error. Captions are
    already normalised upstream, so sentencepiece's own normalisation is off (identity). Rare
    characters left out by `character_coverage` fall back to byte pieces, so encoding is lossless.
    """
    if not sentences:
        raise ValueError("no captions to train the vocabulary on (check vocab.splits)")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=size,
        model_type=model_type,
        hard_vocab_limit=False,
        character_coverage=character_coverage,
        normalization_rule_name="identity",
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        user_defined_symbols=[MASK_PIECE],
        byte_fallback=True,  # a character unseen in training becomes UTF-8 byte pieces, never <unk>
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=max(1, num_threads),
        minloglevel=2,
    )
    return model.getvalue()


def load_vocab(model_proto: bytes) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=model_proto)


def check_vocab(model_proto: bytes) -> None:
    """A model given by the user must use the ids the model code relies on."""
    sp = load_vocab(model_proto)
    got = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id(MASK_PIECE))
    if got[:4] != (PAD_ID, UNK_ID, BOS_ID, EOS_ID) or got[4] == UNK_ID:
        raise ValueError(
            f"the sentencepiece model has pad/unk/bos/eos ids {got[:4]} and mask id {got[4]}; "
            f"expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)} and a '{MASK_PIECE}' piece: train it with dist-train preprocess"
        )


def vocab_size_of(model_proto: bytes) -> int:
    return load_vocab(model_proto).get_piece_size()


__all__ = ["balanced_sample", "language_quotas", "train_vocab", "load_vocab", "check_vocab",
           "PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "MASK_PIECE"]
