"""`dist-train eval` end to end (word translation and CLC sections), and the metric assembly of
`dist_train.eval.run` on synthetic embeddings whose answers are known."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from dist_train.eval.clc import CLCClassifier
from dist_train.eval.embed import SplitCaptions
from dist_train.eval.retrieval import cross_modal_recall
from dist_train.eval.run import (QueryVersions, build_query_versions, clc_text_to_image, contextual_embedding_tables,
                                 fit_clc_classifier, input_embedding_tables, special_token_ids, translations_of,
                                 word_translation_metrics)

from ..conftest import run_cli

SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_ADDRESS": ""}


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def leaves_without_chance(node, trail=()):
    """Paths of dicts that hold a "value" but no "chance" (every figure must have its chance)."""
    bad = []
    if isinstance(node, dict):
        if "value" in node and "chance" not in node:
            bad.append("/".join(trail))
        for key, child in node.items():
            bad += leaves_without_chance(child, (*trail, str(key)))
    return bad


# ---------------------------------------------------------------------------------------------
# the real command on the tiny benchmark, with translated queries in val and test


@pytest.fixture(scope="module")
def translated_shards(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre-translated") / "world-tiny"
    run_cli("-q", "preprocess", "--in", tiny_world, "--out", out, "ray.object_store_memory=300000000",
            "translate.enabled=true", "translate.backend=world", "translate.query_splits=[val,test]",
            "translate.query_languages=[en,de,ja]", env=SINGLE_THREAD)
    return out


@pytest.fixture(scope="module")
def untrained_export(translated_shards, tmp_path_factory):
    """A tiny Globetrotter, untrained, saved as an export folder (as `dist-train export` writes one)."""
    import yaml
    from safetensors.torch import save_file

    from dist_train.models.registry import build_model
    from dist_train.preprocess.vocab import vocab_size_of

    torch.manual_seed(0)
    model = build_model("globetrotter", {
        "vocab_size": vocab_size_of((translated_shards / "spm.model").read_bytes()), "hidden": 32, "layers": 1,
        "heads": 2, "intermediate": 64, "embed_dim": 32, "max_length": 32})
    seen, tensors = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # the cloze head's decoder is the word embeddings
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.contiguous()
    out = tmp_path_factory.mktemp("export")
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.yaml").write_text(yaml.safe_dump({
        "model": "globetrotter", "model_config": model.config_dict(), "data": {"max_tokens": 32, "image_size": 32}}))
    return out


@pytest.fixture(scope="module")
def evaluated(untrained_export, translated_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    proc = run_cli("eval", "--checkpoint", untrained_export, "--shards", translated_shards, "--out", out,
                   env=SINGLE_THREAD)
    return out, json.loads((out / "metrics.json").read_text()), proc.stdout


def test_eval_writes_every_section_with_chance_beside_every_figure(evaluated):
    out, metrics, stdout = evaluated
    assert {"sentence_translation", "word_translation", "cross_modal"} <= set(metrics)
    assert leaves_without_chance({k: v for k, v in metrics.items() if k != "meta"}) == []
    assert "word translation R@10" in stdout and "CLC-A" in stdout
    assert (out / "sentence_translation_pairs.png").is_file() and (out / "word_translation_pairs.png").is_file()


def test_eval_word_translation_section(evaluated):
    _, metrics, _ = evaluated
    wt = metrics["word_translation"]
    languages = metrics["sentence_translation"]["by_language_pair"]["languages"]
    assert set(wt["tokens_per_language"]) == set(languages) and len(languages) == 14
    assert len(wt["ground_truth_pairs"]) == 14 * 13 // 2 and sum(wt["ground_truth_pairs"].values()) > 0
    assert wt["alignment"] == "generalized" and wt["retrieval"] == "cosine"
    assert wt["representation"].startswith("input word embeddings")
    for stage in ("before_alignment", "after_alignment"):
        for subset in ("all_tokens_recall@10", "different_tokens_recall@10"):
            node = wt[stage][subset]
            assert set(node["macro"]) == set(node["pooled"]) == {"value", "chance"}
            assert 0 <= node["macro"]["value"] <= 100 and 0 < node["macro"]["chance"] < 100
            matrix = node["by_language_pair"]
            assert matrix["languages"] == languages
            assert matrix["value"][0][0] is None and matrix["value"][0][1] is not None
            # chance is 10 / (tokens of the target language)
            ar, de = languages.index("ar"), languages.index("de")
            assert matrix["chance"][ar][de] == pytest.approx(1000 / wt["tokens_per_language"]["de"])


def test_eval_clc_section_beside_plain_recall(evaluated):
    out, metrics, _ = evaluated
    cm = metrics["cross_modal"]
    clc = cm["clc"]
    languages = sorted(cm["per_language"])
    # every test caption carries translations into en, de and ja (those other than its own)
    assert clc["translation_languages"] == ["de", "en", "ja"]
    assert clc["translators"] == ["world-reference"]
    assert clc["queries_with_translations"] == metrics["meta"]["sentences"] == 336
    assert sorted(clc["text_to_image"]) == languages
    assert clc["clc_c_trained_on"].startswith("val: 84 queries")
    assert 0 <= clc["clc_c_selected_iteration"] <= 30
    for lang, entry in clc["text_to_image"].items():
        assert {"plain", "clc_a", "clc_c"} <= set(entry)
        assert entry["num_queries"] == cm["per_language"][lang]["num_texts"]
        for k in ("R@1", "R@5", "R@10"):
            assert set(entry["clc_a"][k]) == {"value", "chance"}
            # the query alone on the same queries and images is the plain text->image recall
            assert entry["plain"][k] == pytest.approx(cm["per_language"][lang]["text_to_image"][k])
    assert set(clc["average_over_languages"]) == {"plain", "clc_a", "clc_c"}
    report = (out / "report.md").read_text()
    assert "clc / text to image / ja / clc a / R@1" in report
    assert "word translation" in report and "word_translation_pairs.png" in report
    assert "before alignment / different tokens recall@10" in report


def test_eval_reports_clc_c_skipped_when_val_has_no_translations(untrained_export, translated_shards, tmp_path,
                                                                 monkeypatch):
    from dist_train.eval import run

    original = run.read_split_captions

    def without_val_translations(root, split, *args, **kwargs):
        captions = original(root, split, *args, **kwargs)
        if split == "val":
            for md in captions.metas:
                md.get("meta", {}).pop("translations", None)
        return captions

    monkeypatch.setattr(run, "read_split_captions", without_val_translations)
    metrics = run.evaluate(untrained_export, translated_shards, tmp_path, word_translation=False)
    clc = metrics["cross_modal"]["clc"]
    assert "no translated queries" in clc["clc_c_skipped"] and "clc_c_trained_on" not in clc
    assert set(clc["average_over_languages"]) == {"plain", "clc_a"}
    assert "word_translation" not in metrics
    assert "clc c skipped" in (tmp_path / "report.md").read_text()


# ---------------------------------------------------------------------------------------------
# word translation assembly on synthetic token ids and embeddings


def parallel_corpus(words: int = 30):
    """One single-word sentence per group and language, so tf-idf finds exactly the lexicon:
    word i is token 10+i in "aa", in "bb" token 10+i (the same id) for i < 5 and 100+i after.
    Every sentence also carries UNK and the cloze mask, which must be dropped."""
    tokens, groups, languages = [], [], []
    for i in range(words):
        for lang, token in (("aa", 10 + i), ("bb", 10 + i if i < 5 else 100 + i)):
            tokens.append(np.array([1, token, 4], dtype=np.int32))
            groups.append(f"g{i}")
            languages.append(lang)
    return tokens, groups, languages


def test_word_translation_metrics_known_values():
    tokens, groups, languages = parallel_corpus()
    rng = np.random.default_rng(0)
    weight = np.zeros((200, 16), dtype=np.float32)
    x = rng.normal(size=(30, 16))
    weight[10:40] = x
    # bb words 5..14 are embedded exactly as their translations; words 15..29 opposite to them
    # (cosine -1: ranked last among 30 candidates, never in the top 10)
    weight[100 + np.arange(5, 15)] = x[5:15]
    weight[100 + np.arange(15, 30)] = -x[15:30]
    drop = special_token_ids({"pad_id": 0, "bos_id": 2, "eos_id": 3, "mask_id": 4})
    assert drop == {0, 1, 2, 3, 4}
    tables = input_embedding_tables(torch.from_numpy(weight), tokens, languages, drop)
    assert list(tables["aa"].tokens) == list(range(10, 40))
    assert list(tables["bb"].tokens) == list(range(10, 15)) + list(range(105, 130))
    np.testing.assert_array_equal(tables["bb"].embeddings[:5], weight[10:15])

    metrics = word_translation_metrics(tables, tokens, groups, languages, drop)
    assert metrics["ground_truth_pairs"] == {"aa-bb": 30}
    assert metrics["tokens_per_language"] == {"aa": 30, "bb": 30}
    before = metrics["before_alignment"]
    chance = 100 * 10 / 30
    # all tokens: 15 of 30 found (5 identical, 10 exact); tokens that differ: 10 of 25
    assert before["all_tokens_recall@10"]["macro"] == {"value": pytest.approx(50.0), "chance": pytest.approx(chance)}
    assert before["different_tokens_recall@10"]["pooled"] == {"value": pytest.approx(40.0),
                                                              "chance": pytest.approx(chance)}
    matrix = before["all_tokens_recall@10"]["by_language_pair"]
    assert matrix["languages"] == ["aa", "bb"]
    assert matrix["value"] == [[None, pytest.approx(50.0)], [pytest.approx(50.0), None]]
    after = metrics["after_alignment"]["all_tokens_recall@10"]["macro"]
    assert after["chance"] == pytest.approx(chance) and 0 <= after["value"] <= 100
    assert leaves_without_chance(metrics) == []


def test_word_translation_is_perfect_for_perfect_embeddings_before_and_after_alignment():
    tokens, groups, languages = parallel_corpus()
    rng = np.random.default_rng(1)
    weight = np.zeros((200, 16), dtype=np.float32)
    x = rng.normal(size=(30, 16))
    weight[10:40] = x
    weight[100 + np.arange(5, 30)] = x[5:30]
    drop = {0, 1, 2, 3, 4}
    tables = input_embedding_tables(weight, tokens, languages, drop)
    for csls in (False, True):
        metrics = word_translation_metrics(tables, tokens, groups, languages, drop, csls=csls)
        assert metrics["retrieval"] == ("csls" if csls else "cosine")
        for stage in ("before_alignment", "after_alignment"):
            for subset in ("all_tokens_recall@10", "different_tokens_recall@10"):
                assert metrics[stage][subset]["macro"]["value"] == pytest.approx(100.0)


def test_contextual_tables_average_hidden_states_over_occurrences():
    weight = torch.randn(50, 8)
    step = torch.randn(8)

    def hidden_of(batch):  # token embedding plus position * step: the average is exact to check
        return weight[batch] + torch.arange(batch.shape[1])[None, :, None] * step

    tokens = [np.array([5, 6, 1]), np.array([6]), np.array([5, 7, 8, 9, 9])]
    tables = contextual_embedding_tables(hidden_of, tokens, ["aa", "aa", "bb"], max_tokens=5, bos_id=2, eos_id=3,
                                         pad_id=0, drop=[1], batch_size=2)
    assert list(tables["aa"].tokens) == [5, 6] and list(tables["bb"].tokens) == [5, 7, 8]  # 9s cut by max_tokens
    np.testing.assert_allclose(tables["aa"].embeddings[0], (weight[5] + 1 * step).numpy(), atol=1e-5)
    np.testing.assert_allclose(tables["aa"].embeddings[1], (weight[6] + 1.5 * step).numpy(), atol=1e-5)
    np.testing.assert_allclose(tables["bb"].embeddings[2], (weight[8] + 3 * step).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# CLC assembly on synthetic embeddings


def synthetic_queries(seed: int = 0, images: int = 20, dim: int = 16):
    """Languages "en" and "fr", one caption per image each, in slots de, en, fr, ja. Originals point
    away from their image (cosine -1: ranked last); their translations into "de" and "ja" are the
    image itself. French captions 0..4 have no translation."""
    rng = np.random.default_rng(seed)
    img = unit(rng.normal(size=(images, dim)))
    slots = ["de", "en", "fr", "ja"]
    originals, rows, own, query_image, languages, extra = [], [], [], [], [], []
    for lang in ("en", "fr"):
        for i in range(images):
            row = [-1] * len(slots)
            row[slots.index(lang)] = len(originals)
            originals.append(-img[i])
            if not (lang == "fr" and i < 5):
                for target in ("de", "ja"):
                    row[slots.index(target)] = 2 * images + len(extra)
                    extra.append(img[i])
            rows.append(row)
            own.append(slots.index(lang))
            query_image.append(i)
            languages.append(lang)
    versions = QueryVersions(slots, np.concatenate([originals, extra]), np.array(rows), np.array(own))
    return img, versions, np.array(query_image), languages


def test_clc_average_known_values_and_chance():
    img, versions, query_image, languages = synthetic_queries()
    result = clc_text_to_image(img, versions, query_image, languages, chunk_size=4)
    metrics = result.to_metrics()
    en, fr = metrics["text_to_image"]["en"], metrics["text_to_image"]["fr"]
    assert en["num_queries"] == 20 and fr["num_queries"] == 15 and en["num_images"] == fr["num_images"] == 20
    for entry in (en, fr):
        for k in (1, 5, 10):
            # alone, each query ranks its image last; CLC-A scores the image (-1 + 1 + 1) / 3 = 1/3
            # and any other image c (-cos + cos + cos) / 3 < 1/3: first
            assert entry["plain"][f"R@{k}"] == {"value": 0.0, "chance": pytest.approx(100 * k / 20)}
            assert entry["clc_a"][f"R@{k}"] == {"value": 100.0, "chance": pytest.approx(100 * k / 20)}
    assert "clc_c" not in en
    assert metrics["average_over_languages"]["clc_a"]["R@5"] == {"value": 100.0, "chance": pytest.approx(25.0)}
    assert leaves_without_chance(metrics) == []


def test_clc_average_helps_when_translations_carry_the_signal():
    img, versions, query_image, languages = synthetic_queries()
    # originals become noisy copies of their image, translations exact: CLC-A ranks the image first
    rng = np.random.default_rng(1)
    n = len(query_image)
    emb = versions.embeddings.copy()
    emb[:n] = unit(img[query_image] + 2.0 * rng.normal(size=(n, img.shape[1])))
    versions = QueryVersions(versions.slots, emb, versions.rows, versions.own)
    whole = clc_text_to_image(img, versions, query_image, languages)
    metrics = whole.to_metrics()
    for lang in ("en", "fr"):
        assert metrics["text_to_image"][lang]["clc_a"]["R@1"]["value"] == 100.0
        assert metrics["text_to_image"][lang]["plain"]["R@1"]["value"] < 100.0
    # chunking changes nothing
    assert clc_text_to_image(img, versions, query_image, languages, chunk_size=1).to_metrics() == metrics
    # "plain" is the ordinary text->image recall of the same queries
    en = [i for i, lang in enumerate(languages) if lang == "en"]
    plain = cross_modal_recall(img, emb[en], query_image[en], ["en"] * len(en)).per_language["en"]
    for k in (1, 5, 10):
        assert metrics["text_to_image"]["en"]["plain"][f"R@{k}"]["value"] == pytest.approx(plain.text_to_image[k])
    # an untrained classifier (equal weights) ranks as CLC-A does
    with_c = clc_text_to_image(img, versions, query_image, languages, classifier=CLCClassifier(4)).to_metrics()
    for lang in ("en", "fr"):
        assert with_c["text_to_image"][lang]["clc_c"] == with_c["text_to_image"][lang]["clc_a"]
    assert set(with_c["average_over_languages"]) == {"plain", "clc_a", "clc_c"}
    assert with_c["average_over_languages"]["clc_a"]["R@1"] == {"value": 100.0, "chance": pytest.approx(5.0)}


def test_clc_candidates_are_the_images_of_the_language():
    img, versions, query_image, languages = synthetic_queries(images=20)
    # French captions only for images 0..9: 10 candidates for French queries
    keep = [i for i, (lang, image) in enumerate(zip(languages, query_image)) if lang == "en" or image < 10]
    rows = versions.rows[keep]
    sub = QueryVersions(versions.slots, versions.embeddings, rows, versions.own[keep])
    metrics = clc_text_to_image(img, sub, query_image[keep], [languages[i] for i in keep]).to_metrics()
    fr = metrics["text_to_image"]["fr"]
    assert fr["num_images"] == 10 and fr["num_queries"] == 5  # images 5..9 have translated French queries
    assert fr["clc_a"]["R@5"]["chance"] == pytest.approx(50.0)


def test_languages_without_translated_queries_are_left_out():
    img, versions, query_image, languages = synthetic_queries()
    rows = versions.rows.copy()
    rows[20:, [0, 3]] = -1  # no French query keeps its translations
    versions = QueryVersions(versions.slots, versions.embeddings, rows, versions.own)
    assert sorted(clc_text_to_image(img, versions, query_image, languages).recall) == ["en"]


def test_fit_clc_classifier_learns_to_trust_the_informative_language():
    img, versions, query_image, languages = synthetic_queries(seed=0, images=40)
    rng = np.random.default_rng(10)
    n, dim = len(query_image), img.shape[1]
    emb = versions.embeddings.copy()
    emb[:n] = unit(rng.normal(size=(n, dim)))  # originals: pure noise
    de, ja = (versions.rows[:, c][versions.rows[:, c] >= 0] for c in (0, 3))
    emb[ja] = unit(rng.normal(size=(len(ja), dim)))  # Japanese translations: pure noise
    emb[de] = unit(emb[de] + rng.normal(size=(len(de), dim)))  # German ones: the image, noisy
    versions = QueryVersions(versions.slots, emb, versions.rows, versions.own)
    classifier, sizes = fit_clc_classifier(img, versions, query_image, init_jitter=0.1)
    assert sizes == {"queries": 80, "images": 40}
    weights = classifier.hidden.weight.detach().mean(0)
    assert weights[0] > 2 * weights[1:].max()  # the German slot
    averages = clc_text_to_image(img, versions, query_image, languages,
                                 classifier=classifier).to_metrics()["average_over_languages"]
    assert averages["clc_c"]["R@1"]["value"] > averages["clc_a"]["R@1"]["value"] > averages["plain"]["R@1"]["value"]
    _, sampled = fit_clc_classifier(img, versions, query_image, max_queries=7)
    assert sampled["queries"] == 7 and sampled["images"] <= 7


def test_build_query_versions_from_caption_metas():
    metas = [
        {"language": "en", "meta": {"translations": {"de": "ein Hund", "ja": "犬", "en": "ignored"},
                                    "translator": "t"}},
        {"language": "fr", "meta": {}},
        {"language": "de", "meta": {"translations": {"en": "a cat", "xx": "not a slot"}}},
    ]
    captions = SplitCaptions(["k0", "k1", "k2"], [np.array([5])] * 3, ["en", "fr", "de"], ["g0", "g1", "g2"],
                             ["i0", "i1", "i2"], metas)
    assert translations_of(metas[0]) == {"de": "ein Hund", "ja": "犬", "en": "ignored"}
    seen = []

    def embed_texts(texts):
        seen.extend(texts)
        return np.full((len(texts), 4), 7.0)

    versions = build_query_versions(captions, np.eye(3, 4), ["de", "en", "fr", "ja"], embed_texts)
    assert seen == ["ein Hund", "犬", "a cat"]
    np.testing.assert_array_equal(versions.rows, [[3, 0, -1, 4], [-1, -1, 1, -1], [2, 5, -1, -1]])
    np.testing.assert_array_equal(versions.own, [1, 2, 0])
    np.testing.assert_array_equal(versions.translated, [True, False, True])
    assert versions.embeddings.shape == (6, 4) and (versions.embeddings[3:] == 7).all()
