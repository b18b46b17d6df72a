"""Multi30K task 2: independent captions, several per image and language, packed without translation groups."""

from __future__ import annotations

import argparse
import collections
import gzip
import json

import pytest
from PIL import Image

from dist_train.data.pack import PackOptions, pack
from dist_train.data.shards import iter_shard, list_finished_shards
from dist_train.data.sources.base import FileImage, SourceRecord
from dist_train.data.sources.multi30k import Multi30kSource
from tests.conftest import run_cli


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (90, 90, 90)).save(path, format="JPEG")
    return path


def _write(path, data: bytes, gz: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def layout(tmp_path):
    """A small task-2 checkout, laid out as github.com/multi30k/dataset's data/task2: train (en, de, two captions
    each; one de line invalid UTF-8, one en line empty), val (en only, its de files missing), test_2016 (one
    image missing; de has captions 1 and 3 only), test_2017 (an image list without captions)."""
    root, images = tmp_path / "dataset", tmp_path / "flickr30k-images"
    task = root / "data" / "task2"
    for name in ("1000092795.jpg", "10002456.jpg", "1000268201.jpg", "1007129816.jpg"):
        _jpeg(images / name)
    _write(task / "image_splits" / "train_images.txt", b"1000092795.jpg\n10002456.jpg\n", gz=False)
    _write(task / "raw" / "train.1.en.gz", b"Two young guys.\nSeveral men in hard hats.\n")
    _write(task / "raw" / "train.2.en.gz", b"Two men in a yard.\n\n")
    _write(task / "raw" / "train.1.de.gz", b"2 Jungs im Garten.\nZwei Arbeiter auf einem Ger\xfcst.\n")
    _write(task / "raw" / "train.2.de.gz", b"Zwei M\xc3\xa4nner im Garten.\nDie M\xc3\xa4nner arbeiten.\n")
    _write(task / "image_splits" / "val_images.txt", b"1000268201.jpg\n", gz=False)
    _write(task / "raw" / "val.1.en.gz", b"A child in a pink dress.\n")
    _write(task / "raw" / "val.2.en", b"A little girl climbs.\r\n", gz=False)
    _write(task / "image_splits" / "test_2016_images.txt", b"1007129816.jpg\nmissing.jpg\n", gz=False)
    for n in (1, 2, 3):
        _write(task / "raw" / f"test_2016.{n}.en.gz", f"A man {n}.\nA woman {n}.\n".encode())
    for n in (1, 3):
        _write(task / "raw" / f"test_2016.{n}.de.gz", f"Ein Mann {n}.\nEine Frau {n}.\n".encode())
    _write(task / "image_splits" / "test_2017_images.txt", b"1000092795.jpg\n", gz=False)
    _write(task / "tok" / "train.lc.norm.tok.1.en", b"two young guys .\nseveral men .\n", gz=False)
    return root, images


def test_records_are_image_by_image_with_distinct_ids_and_no_groups(layout):
    root, images = layout
    src = Multi30kSource(root, images, task=2)
    assert src.splits() == ["train", "val", "test"]  # test_2017 has no captions: left out
    assert [src.count(s) for s in src.splits()] == [8, 2, 10]
    a = FileImage(str(images / "1000092795.jpg"))
    train = list(src.records("train"))
    assert train[:4] == [
        SourceRecord(a, "2 Jungs im Garten.", "de", "1000092795.jpg", "multi30k-task2-train-1-1-de", "train"),
        SourceRecord(a, "Zwei Männer im Garten.", "de", "1000092795.jpg", "multi30k-task2-train-1-2-de", "train"),
        SourceRecord(a, "Two young guys.", "en", "1000092795.jpg", "multi30k-task2-train-1-1-en", "train"),
        SourceRecord(a, "Two men in a yard.", "en", "1000092795.jpg", "multi30k-task2-train-1-2-en", "train"),
    ]
    assert [r.caption for r in train[4:]] == [b"Zwei Arbeiter auf einem Ger\xfcst.", "Die Männer arbeiten.",
                                              "Several men in hard hats.", ""]
    assert [r.caption for r in src.records("val")] == ["A child in a pink dress.", "A little girl climbs."]
    test = list(src.records("test"))
    assert [r.caption_id for r in test[:5]] == [
        "multi30k-task2-test_2016-1-1-de", "multi30k-task2-test_2016-1-3-de", "multi30k-task2-test_2016-1-1-en",
        "multi30k-task2-test_2016-1-2-en", "multi30k-task2-test_2016-1-3-en"]
    records = [r for s in src.splits() for r in src.records(s)]
    assert len({r.caption_id for r in records}) == len(records)
    assert not any(r.translation_group for r in records)


def test_packing_counts_rejects_and_no_translation_groups(layout, tmp_path):
    root, images = layout
    out = tmp_path / "packed"
    summary = pack(Multi30kSource(root, images, task=2), out, PackOptions(workers=0, progress=False))
    splits = summary["splits"]
    assert {s: (v["read"], v["written"], v["rejected"]) for s, v in splits.items()} == {
        "train": (8, 6, 2), "val": (2, 2, 0), "test": (10, 5, 5)}
    assert splits["train"]["rejects"] == {"invalid_utf8": 1, "empty_caption": 1}
    assert splits["test"]["rejects"] == {"missing_image": 5}
    assert splits["train"]["languages"] == {"de": 3, "en": 3} and splits["test"]["languages"] == {"de": 2, "en": 3}
    assert all(v["read"] == v["written"] + v["rejected"] for v in splits.values())
    described = summary["source"]
    assert (described["task"], described["translation_groups"]) == (2, "none")
    assert described["splits"]["test"] == {"multi30k_split": "test_2016", "languages": ["de", "en"],
                                          "captions": {"de": [1, 3], "en": [1, 2, 3]}}
    samples = [json.loads(raw["json"]) for split in splits for tar in list_finished_shards(out, split)
               for raw in iter_shard(tar)]
    assert len(samples) == 13 and not any("translation_group" in md for md in samples)
    assert len({md["caption_id"] for md in samples}) == 13
    per_image = collections.Counter((md["image_id"], md["language"]) for md in samples if md["split"] == "val")
    assert per_image == {("1000268201.jpg", "en"): 2}


def test_missing_files_are_handled_as_in_task1(layout, tmp_path):
    root, images = layout
    task = root / "data" / "task2"
    # a language without files in one split: that split has the other languages; an error only when named
    assert Multi30kSource(root, images, languages=["de"], task=2).splits() == ["train", "test"]
    with pytest.raises(ValueError, match=r"--splits: no caption files for val in"):
        Multi30kSource(root, images, splits=["val"], languages=["de"], task=2)
    with pytest.raises(ValueError, match=r"--splits: no caption files for test_2017 in"):
        Multi30kSource(root, images, splits=["test_2017"], task=2)
    with pytest.raises(ValueError, match=r"--languages: no caption files for fr in .*task2"):
        Multi30kSource(root, images, languages=["en", "fr"], task=2)
    with pytest.raises(ValueError, match=r"--splits: Multi30K has no split 'test_2016_flickr' here: no .*"
                                         r"test_2016_flickr_images.txt"):
        Multi30kSource(root, images, splits=["test_2016_flickr"], task=2)
    with pytest.raises(ValueError, match=r"--root: no Multi30K image lists in .*task1"):
        Multi30kSource(root, images)  # task 1 by default, and this checkout has task 2 only
    with pytest.raises(ValueError, match=r"--task: Multi30K has tasks 1 and 2, not 3"):
        Multi30kSource(root, images, task=3)
    _write(task / "raw" / "train.2.de.gz", b"Nur eine Zeile.\n")
    with pytest.raises(ValueError) as e:
        Multi30kSource(root, images, task=2)
    assert str(e.value) == (f"{task / 'raw' / 'train.2.de.gz'} has 1 lines but "
                            f"{task / 'image_splits' / 'train_images.txt'} has 2: caption line i must describe image i")


def test_task2_through_the_cli(layout, tmp_path):
    root, images = layout
    parser = argparse.ArgumentParser()
    Multi30kSource.add_arguments(parser)
    args = parser.parse_args(["--root", str(root), "--images", str(images), "--task", "2", "--splits", "val"])
    src = Multi30kSource.from_args(args)
    assert (src.task, src.splits()) == (2, ["val"])
    assert parser.parse_args(["--root", str(root), "--images", str(images)]).task == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", str(root), "--images", str(images), "--task", "3"])
    out = tmp_path / "cli"
    run_cli("-q", "pack", "multi30k", "--root", root, "--images", images, "--task", "2", "--splits", "train,val",
            "--out", out, "--workers", "0")
    summary = json.loads((out / "summary.json").read_text())
    assert {s: v["written"] for s, v in summary["splits"].items()} == {"train": 6, "val": 2}
