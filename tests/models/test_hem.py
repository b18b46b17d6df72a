"""The Hybrid Embedding Model and its latent-assignment pretraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dist_train.models.hem import MASK, PAD, UNK, HybridEmbedding, LatentAssigner, full_vocabulary_parameters
from dist_train.train.hem_vocab import HemSettings, pad_word_ids, pretrain_assignment


def small_hem():
    # ids 3-5: language 0 (3, 4 specific; 5 latent 0); ids 6-8: language 1 (6 specific; 7 latent 0, 8 latent 1)
    hem = HybridEmbedding(num_words=9, num_languages=2, num_specific=3, num_latent=2, word_dim=4, embed_dim=6)
    language = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1])
    specific = torch.tensor([-1, -1, -1, 0, 1, -1, 2, -1, -1])
    latent = torch.tensor([-1, -1, -1, -1, -1, 0, -1, 0, 1])
    vectors = torch.arange(12, dtype=torch.float32).view(3, 4) / 10
    hem.load_vocabulary(language, specific, latent, vectors, torch.randn(2, 6))
    return hem, vectors


def test_hybrid_embedding_routes_each_word_to_its_table():
    hem, vectors = small_hem()
    out = hem(torch.tensor([[3, 5, 7, 6, PAD], [MASK, UNK, 8, 4, PAD]]))
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out[0, 0], vectors[0] @ hem.projection[0] + hem.projection_bias[0])
    torch.testing.assert_close(out[0, 3], vectors[2] @ hem.projection[1] + hem.projection_bias[1])
    # a rare word of each language assigned to latent token 0 shares its vector
    torch.testing.assert_close(out[0, 1], hem.latent[0])
    torch.testing.assert_close(out[0, 2], hem.latent[0])
    torch.testing.assert_close(out[1, 2], hem.latent[1])
    torch.testing.assert_close(out[1, 0], hem.special[0])
    torch.testing.assert_close(out[1, 1], hem.special[1])
    assert torch.all(out[:, 4] == 0)


def test_hybrid_embedding_trains_specific_vectors_and_latent_tokens():
    hem, _ = small_hem()
    hem(torch.tensor([[3, 5, 8]])).sum().backward()
    assert hem.specific.grad[0].abs().sum() > 0 and hem.specific.grad[1].abs().sum() == 0
    assert hem.latent.grad[0].abs().sum() > 0 and hem.latent.grad[1].abs().sum() > 0
    assert hem.projection.grad[1].abs().sum() == 0  # language 1 had no specific word in the batch


def test_parameter_counts_hybrid_below_full_vocabulary():
    hem = HybridEmbedding(num_words=20003, num_languages=10, num_specific=10 * 500, num_latent=300, word_dim=50,
                          embed_dim=512)
    counts = hem.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in hem.parameters())
    assert counts["total"] < full_vocabulary_parameters(20000, 10, 50, 512)


def test_exploration_picks_among_the_top_m():
    scores = torch.tensor([[0.9, 0.8, 0.7, -1.0, -1.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    chosen = LatentAssigner.choose(scores, explore_p=0.2, explore_top_m=3, generator=g)
    share_best = float((chosen == 0).float().mean())
    assert set(chosen.tolist()) == {0, 1, 2}
    assert abs(share_best - (0.8 + 0.2 / 3)) < 0.04
    assert torch.equal(LatentAssigner.choose(scores), torch.zeros(2000, dtype=torch.long))


def synthetic_parallel_corpus(concepts=30, sentences=600, word_dim=40, seed=0):
    """Two languages whose words for one concept have unrelated random vectors; a sentence names 3
    concepts; each image has its sentence in both languages."""
    rng = np.random.default_rng(seed)
    vectors = np.zeros((3 + 2 * concepts, word_dim), np.float32)
    vectors[3:] = rng.normal(size=(2 * concepts, word_dim))
    word_language = np.array([-1, -1, -1] + [0] * concepts + [1] * concepts)
    word_ids, image_ids, languages = [], [], []
    for s in range(sentences):
        chosen = rng.choice(concepts, size=3, replace=False)
        for lang in (0, 1):
            word_ids.append([3 + lang * concepts + int(c) for c in chosen])
            image_ids.append(f"img{s}")
            languages.append(["xx", "yy"][lang])
    return word_ids, image_ids, languages, vectors, word_language


def test_pretraining_brings_translations_together_and_drops_unused_tokens():
    word_ids, image_ids, languages, vectors, word_language = synthetic_parallel_corpus()
    settings = HemSettings(latent_size=200, pretrain_steps=150, pretrain_batch=64, explore_p=0.2, explore_top_m=5)
    assignment, latent, losses = pretrain_assignment(word_ids, image_ids, languages, vectors, word_language,
                                                     settings, seed=0, progress=False)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])

    def embed(rows):
        ids = pad_word_ids(rows, 8)
        emb = torch.as_tensor(latent)[torch.as_tensor(assignment)[ids.clamp(min=3)]]
        return F.normalize((emb * (ids > UNK)[..., None]).sum(1), dim=-1)

    a = embed(word_ids[0::2][:200])
    b = embed(word_ids[1::2][:200])
    sim = a @ b.T
    translation = sim.diag().mean()
    random_pairs = sim[~torch.eye(200, dtype=torch.bool)].mean()
    assert translation > random_pairs + 0.3
    # recall@1 of the translation among 200 sentences, far above chance (0.5 %)
    assert float((sim.argmax(1) == torch.arange(200)).float().mean()) > 0.5
    used = np.unique(assignment[3:])
    assert len(used) < 200  # most of the 200 tokens are never chosen and would be dropped
    assert (assignment[:3] == -1).all()


def test_pretraining_is_reproducible_from_the_seed():
    word_ids, image_ids, languages, vectors, word_language = synthetic_parallel_corpus(sentences=100)
    settings = HemSettings(latent_size=50, pretrain_steps=5, pretrain_batch=16)
    first = pretrain_assignment(word_ids, image_ids, languages, vectors, word_language, settings, 3, progress=False)
    second = pretrain_assignment(word_ids, image_ids, languages, vectors, word_language, settings, 3, progress=False)
    assert np.array_equal(first[0], second[0])
    assert np.allclose(first[2], second[2], rtol=1e-5)  # summation order of threaded kernels may differ


def test_agnostic_and_full_modes_build_only_the_tables_they_use():
    agnostic = HybridEmbedding(num_words=6, num_languages=2, num_specific=0, num_latent=2, word_dim=4, embed_dim=3)
    assert agnostic.specific is None and agnostic.projection is None
    assert agnostic.parameter_counts()["language_specific"] == 0
    agnostic.load_vocabulary(torch.tensor([-1, -1, -1, 0, 1, 1]), torch.full((6,), -1), torch.tensor([-1, -1, -1, 0, 0, 1]))
    out = agnostic(torch.tensor([[3, 4, 5]]))
    torch.testing.assert_close(out[0, 0], out[0, 1])  # one latent token for words of two languages
    full = HybridEmbedding(num_words=6, num_languages=2, num_specific=3, num_latent=0, word_dim=4, embed_dim=3)
    assert full.latent is None and full.parameter_counts()["latent"] == 0
    with pytest.raises(ValueError, match="num_latent"):
        full.load_vocabulary(torch.tensor([-1, -1, -1, 0, 1, 1]), torch.tensor([-1, -1, -1, 0, 1, -1]),
                             torch.tensor([-1, -1, -1, -1, -1, 0]))
