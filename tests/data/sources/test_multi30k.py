from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import pytest
from PIL import Image

from dist_train.data.sources.base import FileImage, SourceRecord
from dist_train.data.sources.multi30k import Multi30kSource


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (90, 90, 90)).save(path, format="JPEG")
    return path


def _write(path, data: bytes, gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def layout(tmp_path):
    """A small checkout: train (en, de; one de line is invalid UTF-8), val (en, uncompressed), test_2016_flickr."""
    root, images = tmp_path / "dataset", tmp_path / "flickr30k-images"
    task = root / "data" / "task1"
    for name in ("1000092795.jpg", "10002456.jpg", "1000268201.jpg"):
        _jpeg(images / name)
    _write(task / "image_splits" / "train.txt", b"1000092795.jpg\n10002456.jpg\n")
    _write(task / "raw" / "train.en.gz", b"Two young guys.\nSeveral men in hard hats.\n", gz=True)
    _write(task / "raw" / "train.de.gz", b"Zwei junge M\xc3\xa4nner.\nMehrere M\xe4nner mit Helmen.\n", gz=True)
    _write(task / "image_splits" / "val.txt", b"1000268201.jpg\r\n")
    _write(task / "raw" / "val.en", b"A child in a pink dress.\r\n")
    _write(task / "image_splits" / "test_2016_flickr.txt", b"10002456.jpg\nmissing.jpg\n")
    _write(task / "raw" / "test_2016_flickr.en.gz", b"A man.\n\n", gz=True)
    _write(task / "raw" / "test_2016_flickr.fr.gz", b"Un homme.\nUne femme.", gz=True)
    _write(task / "tok" / "train.lc.norm.tok.en", b"two young guys .\nseveral men .\n")
    return root, images


def test_records_per_split_and_language(layout):
    root, images = layout
    src = Multi30kSource(root, images)
    assert src.splits() == ["train", "val", "test"]
    assert [src.count(s) for s in src.splits()] == [4, 1, 4]
    a, b = FileImage(str(images / "1000092795.jpg")), FileImage(str(images / "10002456.jpg"))
    assert list(src.records("train")) == [
        SourceRecord(a, "Zwei junge Männer.", "de", "1000092795.jpg", "multi30k-train-1-de", "train",
                     translation_group="multi30k-train-1"),
        SourceRecord(a, "Two young guys.", "en", "1000092795.jpg", "multi30k-train-1-en", "train",
                     translation_group="multi30k-train-1"),
        SourceRecord(b, b"Mehrere M\xe4nner mit Helmen.", "de", "10002456.jpg", "multi30k-train-2-de", "train",
                     translation_group="multi30k-train-2"),
        SourceRecord(b, "Several men in hard hats.", "en", "10002456.jpg", "multi30k-train-2-en", "train",
                     translation_group="multi30k-train-2"),
    ]
    assert list(src.records("val")) == [SourceRecord(
        FileImage(str(images / "1000268201.jpg")), "A child in a pink dress.", "en", "1000268201.jpg",
        "multi30k-val-1-en", "val", translation_group="multi30k-val-1")]
    assert list(src.records("test")) == [
        SourceRecord(b, "A man.", "en", "10002456.jpg", "multi30k-test_2016_flickr-1-en", "test",
                     translation_group="multi30k-test_2016_flickr-1"),
        SourceRecord(b, "Un homme.", "fr", "10002456.jpg", "multi30k-test_2016_flickr-1-fr", "test",
                     translation_group="multi30k-test_2016_flickr-1"),
        SourceRecord(FileImage(str(images / "missing.jpg")), "", "en", "missing.jpg",
                     "multi30k-test_2016_flickr-2-en", "test", translation_group="multi30k-test_2016_flickr-2"),
        SourceRecord(FileImage(str(images / "missing.jpg")), "Une femme.", "fr", "missing.jpg",
                     "multi30k-test_2016_flickr-2-fr", "test", translation_group="multi30k-test_2016_flickr-2"),
    ]
    assert list(src.records("test_2016_flickr")) == []


def test_chosen_splits_and_languages(layout):
    root, images = layout
    src = Multi30kSource(root, images, splits=["test_2016_flickr", "train"], languages=["fr", "en"])
    assert src.splits() == ["test", "train"]
    assert [(r.caption_id, r.caption) for r in src.records("test")] == [
        ("multi30k-test_2016_flickr-1-fr", "Un homme."), ("multi30k-test_2016_flickr-1-en", "A man."),
        ("multi30k-test_2016_flickr-2-fr", "Une femme."), ("multi30k-test_2016_flickr-2-en", "")]
    assert [r.language for r in src.records("train")] == ["en", "en"]
    # val has no German captions: left out when splits are not named, an error when they are
    assert Multi30kSource(root, images, languages=["de"]).splits() == ["train"]
    with pytest.raises(ValueError, match=r"--splits: no caption files for val in"):
        Multi30kSource(root, images, splits=["val"], languages=["de"])


def test_a_caption_file_that_does_not_align_with_the_image_list_is_an_error(layout):
    root, images = layout
    task = root / "data" / "task1"
    _write(task / "raw" / "train.de.gz", b"Nur eine Zeile.\n", gz=True)
    with pytest.raises(ValueError) as e:
        Multi30kSource(root, images)
    assert str(e.value) == (f"{task / 'raw' / 'train.de.gz'} has 1 lines but {task / 'image_splits' / 'train.txt'} "
                            "has 2: caption line i must describe image i")


def test_other_config_errors(layout, tmp_path):
    root, images = layout
    with pytest.raises(ValueError, match=r"--splits: Multi30K has no split 'test_2030' here"):
        Multi30kSource(root, images, splits=["test_2030"])
    with pytest.raises(ValueError, match=r"--languages: no caption files for cs, ja in"):
        Multi30kSource(root, images, languages=["en", "cs", "ja"])
    _write(root / "data" / "task1" / "image_splits" / "Odd Name.txt", b"1000092795.jpg\n")
    with pytest.raises(ValueError, match=r"--splits: invalid split name 'Odd Name'"):
        Multi30kSource(root, images, splits=["Odd Name"])
    with pytest.raises(ValueError, match=r"--root: no Multi30K image lists in"):
        Multi30kSource(tmp_path, images)
    with pytest.raises(ValueError, match=r"--images: no such directory"):
        Multi30kSource(root, tmp_path / "nowhere")


def test_mscoco_test_images_come_from_the_coco_folder(layout, tmp_path):
    root, images = layout
    task = root / "data" / "task1"
    _write(task / "image_splits" / "test_2017_mscoco.txt",
           b"COCO_train2014_000000117071.jpg#367178\nCOCO_val2014_000000398076.jpg#657409\n")
    _write(task / "raw" / "test_2017_mscoco.en.gz", b"A bus.\nA cat.\n", gz=True)
    coco = tmp_path / "coco2014"
    coco.mkdir()
    src = Multi30kSource(root, images, splits=["test_2017_mscoco"], coco_images=coco)
    assert src.splits() == ["test_2017_mscoco"]
    assert list(src.records("test_2017_mscoco")) == [
        SourceRecord(FileImage(str(coco / "train2014" / "COCO_train2014_000000117071.jpg")), "A bus.", "en",
                     "COCO_train2014_000000117071.jpg", "multi30k-test_2017_mscoco-1-en", "test_2017_mscoco",
                     translation_group="multi30k-test_2017_mscoco-1"),
        SourceRecord(FileImage(str(coco / "val2014" / "COCO_val2014_000000398076.jpg")), "A cat.", "en",
                     "COCO_val2014_000000398076.jpg", "multi30k-test_2017_mscoco-2-en", "test_2017_mscoco",
                     translation_group="multi30k-test_2017_mscoco-2"),
    ]
    without = Multi30kSource(root, images, splits=["test_2017_mscoco"])
    assert next(without.records("test_2017_mscoco")).image == FileImage(
        str(images / "COCO_train2014_000000117071.jpg"))


def test_from_args_through_a_real_parser(layout):
    root, images = layout
    parser = argparse.ArgumentParser()
    Multi30kSource.add_arguments(parser)
    args = parser.parse_args(["--root", str(root), "--images", str(images), "--splits", "val, test_2016_flickr",
                              "--languages", "en"])
    src = Multi30kSource.from_args(args)
    assert src.splits() == ["val", "test"]
    assert [r.caption_id for r in src.records("test")] == [
        "multi30k-test_2016_flickr-1-en", "multi30k-test_2016_flickr-2-en"]
    described = src.describe()
    files = described.pop("input_files")
    assert described == {
        "source": "multi30k", "root": str(root.resolve()), "images": str(images.resolve()), "coco_images": None,
        "splits": {"val": {"multi30k_split": "val", "languages": ["en"]},
                   "test": {"multi30k_split": "test_2016_flickr", "languages": ["en"]}},
        "translation_groups": "line",
    }
    task = (root / "data" / "task1").resolve()
    assert sorted(Path(p).relative_to(task).as_posix() for p in files) == sorted(
        f"{kind}/{p.name}" for kind in ("image_splits", "raw") for p in (task / kind).iterdir()
        if p.name.split(".")[0] in ("val", "test_2016_flickr") and (kind == "image_splits" or ".en" in p.name))
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", str(root)])  # --images is required
