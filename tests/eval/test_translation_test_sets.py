"""A human-translated test set from a table, end to end: `dist-train pack table` with translation groups
(--group-by image, or a --group-column), `dist-train preprocess`, two steps of `dist-train train` (whose
final evaluation reads the groups) and `dist-train eval`; and the one-line error, before anything
trains, for a split whose captions translate nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from dist_train.train.data import caption_group, translation_groups_problem

from ..conftest import REPO, run_cli

SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_ADDRESS": "",
                 "DS_ACCELERATOR": "cpu"}

COLOURS = {"red": ("rot", "rouge", (220, 30, 30)), "green": ("grün", "vert", (30, 200, 30)),
           "blue": ("blau", "bleu", (30, 30, 220)), "yellow": ("gelb", "jaune", (230, 220, 30))}
SHAPES = {"square": ("Quadrat", "carré"), "circle": ("Kreis", "cercle"), "triangle": ("Dreieck", "triangle")}


def _image(path: Path, colour: tuple[int, int, int], shape: str) -> None:
    image = Image.new("RGB", (40, 40), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    box = (8, 8, 32, 32)
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(20, 6), (34, 34), (6, 34)], fill=colour)
    image.save(path)  # PNG or JPEG by the name: the packer re-encodes either


def _rows(split: str, scenes: list[tuple[str, str]], group: str | None = "image") -> list[list[str]]:
    """One caption per language (en, de, fr) of each scene's image; `group`: "image" (the image's
    name), "one-language" (one group per language: captions of one language only) or None (an empty cell)."""
    rows = []
    for i, (colour, shape) in enumerate(scenes):
        de_colour, fr_colour, _ = COLOURS[colour]
        de_shape, fr_shape = SHAPES[shape]
        image = f"images/{split}-{i}.{'png' if i % 2 else 'jpg'}"
        for language, caption in (("en", f"a {colour} {shape}"), ("de", f"ein {de_colour} {de_shape}"),
                                  ("fr", f"un {fr_shape} {fr_colour}")):
            value = {"image": f"{split}-{i}", "one-language": f"{split}-{language}", None: ""}[group]
            rows.append([image, caption, language, split, value])
    return rows


TRAIN = [(c, s) for c in COLOURS for s in SHAPES][:8]
TEST = [("red", "circle"), ("green", "triangle"), ("blue", "square"), ("yellow", "circle")]


def _table(root: Path, rows: list[list[str]]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for image, caption, language, split, _ in rows:
        if language == "en":
            colour, shape = caption.split()[1:]
            _image(root / image, COLOURS[colour][2], shape)
    table = root / "captions.csv"
    table.write_text("image,caption,language,split,group\n" + "".join(",".join(r) + "\n" for r in rows),
                     encoding="utf-8")
    return table


def _pack_and_preprocess(root: Path, table: Path, *group_options: str) -> Path:
    run_cli("-q", "pack", "table", "--table", table, "--split-column", "split", *group_options,
            "--workers", "0", "--out", root / "packed")
    run_cli("-q", "preprocess", "--in", root / "packed", "--out", root / "ready", "ray.object_store_memory=300000000",
            env=SINGLE_THREAD)
    return root / "ready"


def _train_args(data: Path, out: Path, *extra: str) -> list:
    return ["train", "--config", REPO / "configs" / "globetrotter-tiny.yaml", f"out_dir={out}", f"data.shards={data}",
            f"deepspeed.config={REPO / 'configs' / 'deepspeed' / 'zero2.json'}", "model_config.hidden=32",
            "model_config.layers=1", "model_config.heads=2", "model_config.intermediate=64",
            "model_config.embed_dim=32", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
            "data.shuffle_buffer=8", "max_steps=2", "epochs=null", "optim.warmup_steps=1", "log.every_steps=1",
            "eval.batch_size=16", "log.projector_sentences=12", *extra]


def _eval(checkpoint: Path, data: Path, out: Path, *extra: str, check: bool = True):
    return run_cli("eval", "--checkpoint", checkpoint, "--shards", data, "--out", out, *extra, check=check,
                   env=SINGLE_THREAD)


def _unexplained_nones(node, trail=(), explained=False) -> list[str]:
    """Paths of figures without a number that no enclosing "skipped" entry explains."""
    if not isinstance(node, dict):
        return []
    explained = explained or "skipped" in node
    if set(node) == {"value", "chance"}:
        return [] if explained or None not in node.values() else ["/".join(trail)]
    return [p for key, child in node.items() for p in _unexplained_nones(child, (*trail, str(key)), explained)]


@pytest.fixture(scope="module")
def by_image(tmp_path_factory):
    """Packed with --group-by image, preprocessed, trained 2 steps on 2 processes and evaluated."""
    root = tmp_path_factory.mktemp("by-image")
    table = _table(root, _rows("train", TRAIN) + _rows("test", TEST))
    data = _pack_and_preprocess(root, table, "--group-by", "image")
    run = root / "run"
    trained = run_cli(*_train_args(data, run, "--nproc-per-node", "2"), env=SINGLE_THREAD, timeout=600)
    evaluated = _eval(run / "checkpoints", data, root / "eval")
    return data, run, trained, root / "eval", evaluated


def test_a_table_grouped_by_image_trains_and_evaluates_sentence_translation(by_image):
    data, run, trained, out, evaluated = by_image
    assert "finished at step 2" in trained.stderr  # torchrun's rank 0 log
    metrics = json.loads((out / "metrics.json").read_text())
    # 4 test images x 3 languages: 12 queries, each with its 2 translations as positives
    for key, candidates in (("sentence_translation", 8), ("sentence_translation_pooled", 11)):
        section = metrics[key]
        assert (section["num_queries"], section["num_positives"]) == (12, 24), key
        assert section["retrieved_positives"]["chance"] == pytest.approx(100 * 2 / candidates)
        assert 0 <= section["retrieved_positives"]["value"] <= 100
        assert section["by_language_pair"]["languages"] == ["de", "en", "fr"]
    assert metrics["meta"]["sentences"] == 12 and metrics["meta"]["languages"] == ["de", "en", "fr"]
    # de, en and fr share the Latin script: no disjoint-script pair, said so rather than left as a blank figure
    assert "share a script" in metrics["sentence_translation"]["disjoint_script_pairs"]["skipped"]
    assert "human-captioned languages" in metrics["cross_modal"]["human_average_mean_recall"]["skipped"]
    assert _unexplained_nones({k: v for k, v in metrics.items() if k != "meta"}) == []
    (summary,) = [line for line in evaluated.stdout.splitlines() if line.startswith("sentence translation ")]
    assert "None" not in summary and "nan" not in summary and "per-pair top-1" in summary
    report = (out / "report.md").read_text()
    assert "disjoint script pairs: not computed: every two of the split's languages share a script" in report
    # training's own final evaluation read the same groups and logged every figure it computed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = sorted((run / "tb").glob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/sentence_translation", "eval/sentence_translation_chance",
            "eval/sentence_translation_pooled"} <= tags
    (chance,) = acc.Scalars("eval/sentence_translation_chance")
    assert chance.step == 2 and chance.value == pytest.approx(25.0)
    assert "not logged" not in trained.stderr


@pytest.fixture(scope="module")
def by_column(tmp_path_factory):
    """Packed with --group-column; besides train and test, a split without groups and one whose groups
    each hold one language. Preprocessed and trained 2 steps on 1 process."""
    root = tmp_path_factory.mktemp("by-column")
    rows = (_rows("train", TRAIN) + _rows("test", TEST[:3]) + _rows("nogroups", TEST[:2], group=None)
            + _rows("onelanguage", TEST[:2], group="one-language"))
    data = _pack_and_preprocess(root, _table(root, rows), "--group-column", "group")
    run = root / "run"
    run_cli(*_train_args(data, run), env=SINGLE_THREAD, timeout=600)
    return data, run, root


def test_a_table_with_a_group_column_evaluates_its_groups(by_column):
    data, run, root = by_column
    proc = _eval(run / "checkpoints", data, root / "eval", "--no-word-translation")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    st = metrics["sentence_translation"]
    assert (st["num_queries"], st["num_positives"]) == (9, 18)  # 3 images x 3 languages, 2 translations each
    assert _unexplained_nones({k: v for k, v in metrics.items() if k != "meta"}) == []
    assert "sentence translation" in proc.stdout


@pytest.mark.parametrize("split, why", [
    ("nogroups", "it declares no translation groups (6 captions, each a group of its own)"),
    ("onelanguage", "each of its 3 translation groups holds captions of one language only (languages: de, en, fr)"),
])
def test_a_split_without_translations_is_refused_in_one_line_before_training(by_column, tmp_path, split, why):
    data, run, _ = by_column
    for launch in ([], ["--nproc-per-node", "2"]):
        out = tmp_path / f"run{len(launch)}"
        proc = run_cli(*_train_args(data, out, f"eval.split={split}", *launch), check=False, env=SINGLE_THREAD)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"dist-train train: error: cannot evaluate sentence translation (the globetrotter "
                                   f"objective's evaluation, eval.split) on split '{split}' of {data}: {why}")
        assert "--group-by image" in lines[0] and "--group-column NAME" in lines[0]
        assert not (out / "checkpoints").exists() and not (out / "tb").exists()
    proc = _eval(run / "checkpoints", data, tmp_path / "eval", "--split", split, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"dist-train eval: error: cannot evaluate sentence translation on split '{split}'")
    assert why in line and "--group-by image" in line
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_caption_group_reads_the_declared_group_first():
    said = {"said": {"kind": "x"}}
    plain = {"caption_id": "c1", "provenance": {"source_caption_id": None}, "meta": {}}
    assert caption_group({**plain, "translation_group": "g"}) == "group:g"
    assert caption_group({**plain, "translation_group": None}) == "caption:c1"  # old datasets: no field at all
    assert caption_group(plain) == "caption:c1"
    assert caption_group({**plain, "provenance": {"source_caption_id": "c0"}}) == "caption:c0"
    assert caption_group({**plain, "meta": said, "translation_group": "g"}) == "group:g"  # before the benchmark's
    assert translation_groups_problem(["a", "a", "b"], ["en", "de", "en"]) is None
    assert translation_groups_problem([], []) == "it has no captions"
    assert "no translation groups" in translation_groups_problem(["a", "b"], ["en", "de"])
    assert "one language only (languages: en)" in translation_groups_problem(["a", "a"], ["en", "en"])


def test_figures_that_could_not_be_computed_are_never_formatted_or_logged(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dist_train.eval.report import markdown_report
    from dist_train.eval.run import summary_line
    from dist_train.train.tensorboard import TensorBoardLogger

    blank = {"value": None, "chance": None}
    metrics = {"sentence_translation": {"retrieved_positives": blank, "skipped": "no translations",
                                        "disjoint_script_pairs": {**blank, "pairs": 0, "skipped": "one script"}},
               "bitext_retrieval": {"accuracy": blank, "own_language_neighbours": blank, "skipped": "none"},
               "cross_modal": {"average_mean_recall": {"value": 40.0, "chance": 10.0},
                               "human_average_mean_recall": {"skipped": "no human-captioned languages given"}}}
    line = summary_line(metrics)
    assert line == ("cross-modal mean recall 40.0 (chance 10.0); not computed: sentence translation, per-pair top-1 "
                    "(see metrics.json)")
    report = markdown_report(metrics)
    assert "- disjoint script pairs: not computed: one script" in report
    assert "- human average mean recall: not computed: no human-captioned languages given" in report
    tb = TensorBoardLogger(tmp_path, enabled=True)
    assert tb.scalars({"a": 1.5, "b": None, "c": float("nan")}, step=3) == ["b", "c"]
    tb.close()
    assert "not logged to TensorBoard (no value): b, c" in caplog.text
    (events,) = tmp_path.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["a"] and acc.Scalars("a")[0].value == 1.5
