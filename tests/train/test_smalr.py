"""SMALR's word pipeline (words, .vec files, gensim FastText, PCA) and training through the DeepSpeed engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dist_train.config import ConfigError
from dist_train.models.hem import MASK
from dist_train.train.hem_vocab import (UNK, HemSettings, WordSplitter, WordVocabulary, fit_word_vectors, pca_reduce,
                                        read_vec)
from dist_train.train.objectives.smalr import _objective_config, mask_words
from tests.conftest import REPO, run_cli


def test_words_of_spaced_languages_are_lowercased_runs_of_word_characters():
    split = WordSplitter()
    assert split("Two small RED circles, left of a star.", "en") == ["two", "small", "red", "circles", "left", "of",
                                                                      "a", "star"]
    assert split("Два маленьких красных круга.", "ru") == ["два", "маленьких", "красных", "круга"]
    with pytest.raises(ValueError, match="spm.model"):
        split("二つの小さい赤い丸", "ja")


def test_words_of_unsegmented_languages_are_sentencepiece_pieces(tmp_path):
    from dist_train.preprocess.vocab import train_vocab

    sentences = [f"{n}の{size}{colour}{shape}" for n in ("一つ", "二つ", "三つ") for size in ("小さい", "大きい")
                 for colour in ("赤い", "青い", "白い", "黒い") for shape in ("丸", "四角", "星")]
    model = train_vocab(sentences, size=300, model_type="bpe")
    split = WordSplitter(model)
    words = split("二つの小さい赤い丸。", "ja")
    assert "".join(words) == "二つの小さい赤い丸" and 1 < len(words) < 9  # pieces, punctuation dropped


def write_vec(path: Path, rows: dict[str, list[float]]) -> None:
    dim = len(next(iter(rows.values())))
    path.write_text(f"{len(rows)} {dim}\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))


def test_vec_files_are_read_by_path_and_bad_ones_named(tmp_path):
    vec = tmp_path / "en.vec"
    write_vec(vec, {"Red": [1.0, 0.0, 0.5], "circle": [0.0, 1.0, 0.25], "unused": [9, 9, 9]})
    vectors, dim = read_vec(vec, ["red", "circle"])
    assert dim == 3 and set(vectors) == {"red", "circle"}
    np.testing.assert_allclose(vectors["circle"], [0.0, 1.0, 0.25])
    bad = tmp_path / "bad.vec"
    bad.write_text("red 1 2 3\n")
    with pytest.raises(ValueError, match="bad.vec"):
        read_vec(bad)


def test_word_vectors_come_from_the_vec_file_or_gensim_then_pca_per_language(tmp_path):
    vec = tmp_path / "en.vec"
    rng = np.random.default_rng(0)
    english = ["red", "blue", "circle", "square", "star", "big", "small", "two"]
    write_vec(vec, {w: rng.normal(size=12).round(4).tolist() for w in english})
    texts = ["two big red circles", "a small blue square", "big star"] * 5 + ["zwei rote Kreise", "ein blaues Quadrat"] * 5
    languages = ["en"] * 15 + ["de"] * 10
    settings = HemSettings(word_dim=4, fasttext_dim=12, fasttext_epochs=2, vec_paths={"en": str(vec)})
    vocab, vectors = fit_word_vectors(texts, languages, WordSplitter(), settings)
    assert vocab.languages == ["de", "en"]
    assert vocab.words["en"][:2] == ["big", "two"] or vocab.words["en"][0] == "big"  # most frequent first
    assert vectors.shape == (vocab.size, 4)
    assert np.all(vectors[:3] == 0)  # specials
    de = slice(vocab.offsets["de"], vocab.offsets["de"] + len(vocab.words["de"]))
    assert np.abs(vectors[de]).sum() > 0  # gensim-trained German vectors
    assert vocab.encode(["red", "zebra"], "en") == [vocab.offsets["en"] + vocab.words["en"].index("red"), UNK]
    # frequency thresholding: words seen fewer than 5 times become unknown
    thresholded = WordVocabulary.from_counts({"en": {"red": 5, "rare": 1}}, min_count=5)
    assert thresholded.words["en"] == ["red"]


def test_pca_keeps_the_leading_directions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) @ np.array([[5.0, 0, 0, 0], [0, 1.0, 0, 0]]) + rng.normal(size=(200, 4)) * 0.01
    reduced = pca_reduce(x, 1)
    assert reduced.shape == (200, 1)
    assert abs(np.corrcoef(reduced[:, 0], x[:, 0])[0, 1]) > 0.99


def test_masking_hits_a_fifth_of_each_sentences_words():
    words = torch.randint(3, 50, (400, 10))
    words[:, 7:] = 0
    words[0, 1:] = 0  # one word: still masked
    masked = mask_words(words, 0.2, torch.Generator().manual_seed(0))
    hit = masked == MASK
    assert hit[0, 0] and hit[0].sum() == 1
    assert torch.all(hit[1:].sum(1) == 1)  # round(0.2 x 7) = 1
    assert not hit[:, 7:].any()
    long = torch.randint(3, 50, (50, 20))
    assert torch.all((mask_words(long, 0.2, torch.Generator().manual_seed(1)) == MASK).sum(1) == 4)
    # the masked positions differ between sentences
    assert len({tuple(row.nonzero().flatten().tolist()) for row in hit[1:]}) > 5


def test_objective_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="objective.hem.topk"):
        _objective_config({"hem": {"topk": 3}})
    with pytest.raises(ConfigError, match="objective.hem.mode"):
        _objective_config({"hem": {"mode": "mixed"}})
    with pytest.raises(ConfigError, match="objective.weighted_direction"):
        _objective_config({"weighted_direction": "both"})
    with pytest.raises(ConfigError, match="objective.sum_of_hinges_steps"):
        _objective_config({"sum_of_hinges_steps": -1})


def test_smalr_trains_with_two_processes_zero2_and_evaluates(tiny_parallel10, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    run_cli("train", "--config", REPO / "configs/smalr-tiny.yaml", "--nproc-per-node", "2", f"out_dir={out}",
            f"data.shards={tiny_parallel10}", "deepspeed.zero_stage=2", "max_steps=4", env=env)
    summary = json.loads((out / "hem" / "summary.json").read_text())
    assert summary["mode"] == "hybrid" and len(summary["languages"]) == 10
    assert 0 < summary["latent_tokens_used"] < 256  # unused latent tokens dropped
    assert summary["shared_words"] > 0 and summary["specific_words"] == 10 * 10
    params = json.loads((out / "hem" / "parameters.json").read_text())
    assert params["embedding_total"] < params["embedding_full_vocabulary_per_language"]
    result = json.loads((out / "eval" / "smalr_step00000004.json").read_text())
    assert len(result["mean_recall"]) == 10
    assert 0 <= result["average_mean_recall"] <= 100
    for method in ("plain", "clc_a", "clc_c"):  # the tiny set carries translated val and test queries
        assert len(result[f"mean_recall_{method}"]) == 10
    # the evaluation's own-version scores are the plain retrieval's
    assert result["average_mean_recall_plain"] == pytest.approx(result["average_mean_recall"], abs=1e-6)
    assert (out / "checkpoints" / "latest").exists()
    # the same command again resumes at the last step and only evaluates: from the checkpoint, every rank
    # gets rank 0's buffers, so the evaluation matches the one made in training only if the ranks' BatchNorm
    # statistics were synchronised before it (they drift apart while training)
    (out / "eval" / "smalr_step00000004.json").unlink()
    run_cli("train", "--config", REPO / "configs/smalr-tiny.yaml", "--nproc-per-node", "2", f"out_dir={out}",
            f"data.shards={tiny_parallel10}", "deepspeed.zero_stage=2", "max_steps=4", env=env)
    again = json.loads((out / "eval" / "smalr_step00000004.json").read_text())
    for key in ("mean_recall", "mean_recall_clc_a"):
        assert again[key] == pytest.approx(result[key], abs=1e-9), key


def test_clc_mean_recall_combines_the_versions_scores_in_both_directions():
    from dist_train.eval.run import QueryVersions
    from dist_train.train.objectives.smalr import clc_mean_recall

    images = torch.eye(4)
    # 4 English queries, one per image; the originals point at the wrong image, both translations at the right one
    wrong = torch.eye(4)[[1, 2, 3, 0]]
    right = torch.eye(4) + 0.01
    embeddings = torch.cat([wrong, right, right])
    rows = np.array([[q, 4 + q, 8 + q] for q in range(4)])
    versions = QueryVersions(["en", "de", "fr"], embeddings.numpy(), rows, np.zeros(4, dtype=np.int64))
    result = clc_mean_recall(images.numpy(), versions, [0, 1, 2, 3], ["en"] * 4)
    assert result["plain"]["en"] < 100 and result["clc_a"]["en"] == pytest.approx(100.0)


def test_a_collapsed_clc_classifier_is_detected():
    from dist_train.eval.clc import CLCClassifier
    from dist_train.train.objectives.smalr import classifier_is_constant

    classifier = CLCClassifier(10)
    assert not classifier_is_constant(classifier, 10)
    with torch.no_grad():
        classifier.hidden.weight.fill_(-0.1)  # scores are mapped to [0, 1] first: every hidden unit stays at 0
    assert classifier_is_constant(classifier, 10)
