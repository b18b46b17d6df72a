"""The heatmap is a real PNG; the Markdown report carries every figure beside its chance."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from dist_train.eval.report import markdown_report, save_pair_heatmap, write_markdown_report
from dist_train.eval.retrieval import cross_modal_recall, sentence_translation


def small_metrics():
    rng = np.random.default_rng(0)
    langs = ["de", "en", "ja"]
    centres = rng.normal(size=(12, 8))
    emb = np.repeat(centres, 3, axis=0) + 0.9 * rng.normal(size=(36, 8))
    translation = sentence_translation(emb, np.repeat(np.arange(12), 3), np.tile(langs, 12))
    images = rng.normal(size=(10, 8))
    text_image = np.repeat(np.arange(10), 2)
    texts = images[text_image] + rng.normal(size=(20, 8))
    cross = cross_modal_recall(images, texts, text_image, np.tile(["de", "en"], 10), human_languages=["en"])
    return translation, {"sentence_translation": translation.to_metrics(), "cross_modal": cross.to_metrics()}


def test_heatmap_is_a_png_pil_can_open(tmp_path):
    translation, _ = small_metrics()
    path = save_pair_heatmap(translation.pair_retrieved, translation.languages, tmp_path / "plots" / "pairs.png",
                             title="Sentence translation", chance=translation.chance)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


def test_heatmap_accepts_the_json_form_with_missing_cells(tmp_path):
    _, metrics = small_metrics()
    matrix = json.loads(json.dumps(metrics))["sentence_translation"]["by_language_pair"]
    assert matrix["value"][0][0] is None
    path = save_pair_heatmap(matrix["value"], matrix["languages"], tmp_path / "m.png")
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_markdown_has_every_figure_beside_its_chance(tmp_path):
    translation, metrics = small_metrics()
    path = write_markdown_report(metrics, tmp_path / "report.md", images={"sentence_translation": "pairs.png"})
    text = path.read_text()
    assert text == markdown_report(metrics, images={"sentence_translation": "pairs.png"})
    assert "## sentence translation" in text and "## cross modal" in text
    assert f"| retrieved positives | {translation.retrieved_positives:.2f} | {translation.chance:.2f} |" in text
    en = metrics["cross_modal"]["per_language"]["en"]
    r1 = en["image_to_text"]["R@1"]
    assert f"| per language / en / image to text / R@1 | {r1['value']:.2f} | {r1['chance']:.2f} |" in text
    hum = metrics["cross_modal"]["human_average_mean_recall"]
    assert f"| human average mean recall | {hum['value']:.2f} | {hum['chance']:.2f} |" in text
    # the language-pair matrix as a table of "value (chance)" cells, diagonal empty
    de, en_ = translation.languages.index("de"), translation.languages.index("en")
    cell = f"{translation.pair_retrieved[de, en_]:.2f} ({translation.pair_chance[de, en_]:.2f})"
    assert "| query \\ target | de | en | ja |" in text and f"| de | – | {cell} |" in text
    assert "![sentence translation](pairs.png)" in text
    assert "- num queries: 36" in text and "- human languages: ['en']" in text


def test_heatmap_scale_runs_from_zero_to_the_best_pair_and_holds_chance():
    import numpy as np

    from dist_train.eval.report import heatmap_range

    assert heatmap_range(np.array([[1.2, 3.7], [np.nan, 0.4]]), chance=1.0) == (0.0, 4.0)
    assert heatmap_range(np.array([[43.0, 99.0]]), chance=1.0) == (0.0, 100.0)
    assert heatmap_range(np.array([[np.nan, 2.0]]), chance=4.2) == (0.0, 4.5)  # chance above every pair
    assert heatmap_range(np.array([[0.0]])) == (0.0, 1.0)
