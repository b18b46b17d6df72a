from __future__ import annotations

import argparse
import hashlib
import json

import pytest
from PIL import Image

from dist_train.data.sources.base import FileImage, SourceRecord
from dist_train.data.sources.coco import CocoSource


def _jpeg(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, format="JPEG")
    return path


def _write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def official(tmp_path):
    """captions_train2017.json with two images, a caption of an unknown image and translated captions."""
    images = tmp_path / "train2017"
    _jpeg(images / "000000000001.jpg")
    _jpeg(images / "000000000002.jpg", (0, 0, 255))
    ann = _write_json(tmp_path / "captions_train2017.json", {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 8, "height": 6},
                   {"id": 2, "file_name": "000000000002.jpg", "width": 8, "height": 6}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A red square."},
            {"id": 11, "image_id": 2, "caption": "Ein blaues Quadrat.", "language": "de"},
            {"id": 12, "image_id": 99, "caption": "An image nobody listed."},
            {"id": 13, "image_id": 1, "caption": "Un carré rouge.", "lang": "fr"},
            {"id": 14, "image_id": 2, "caption": None},
        ],
    })
    return ann, images


def test_official_file_records(official):
    ann, images = official
    src = CocoSource([ann], images)
    assert src.splits() == ["train"]
    assert src.count("train") == 5
    assert list(src.records("train")) == [
        SourceRecord(FileImage(str(images / "000000000001.jpg")), "A red square.", "en", "1", "coco-10", "train"),
        SourceRecord(FileImage(str(images / "000000000002.jpg")), "Ein blaues Quadrat.", "de", "2", "coco-11", "train"),
        SourceRecord(None, "An image nobody listed.", "en", "99", "coco-12", "train"),
        SourceRecord(FileImage(str(images / "000000000001.jpg")), "Un carré rouge.", "fr", "1", "coco-13", "train"),
        SourceRecord(FileImage(str(images / "000000000002.jpg")), None, "en", "2", "coco-14", "train"),
    ]
    assert list(src.records("val")) == []
    first = next(src.records("train"))
    assert first.image.read() == (images / "000000000001.jpg").read_bytes()


def test_split_guessed_per_file_each_with_its_own_image_folder(tmp_path):
    _jpeg(tmp_path / "val2014" / "COCO_val2014_000000000005.jpg")
    _jpeg(tmp_path / "test2015" / "COCO_test2015_000000000007.jpg")
    val = _write_json(tmp_path / "captions_val2014.json", {
        "images": [{"id": 5, "file_name": "COCO_val2014_000000000005.jpg"}],
        "annotations": [{"id": 50, "image_id": 5, "caption": "val caption"}]})
    test = _write_json(tmp_path / "my_test_captions.json", {
        "images": [{"id": 7, "file_name": "COCO_test2015_000000000007.jpg"}],
        "annotations": [{"id": 70, "image_id": 7, "caption": "test caption"}]})
    src = CocoSource([val, test], [tmp_path / "val2014", tmp_path / "test2015"], language="pt-BR")
    assert src.splits() == ["val", "test"]
    assert list(src.records("val")) == [SourceRecord(
        FileImage(str(tmp_path / "val2014" / "COCO_val2014_000000000005.jpg")), "val caption", "pt-BR", "5",
        "coco-50", "val")]
    assert list(src.records("test")) == [SourceRecord(
        FileImage(str(tmp_path / "test2015" / "COCO_test2015_000000000007.jpg")), "test caption", "pt-BR", "7",
        "coco-70", "test")]
    # --split overrides the guess for every official file
    both = CocoSource([val, test], tmp_path, split="extra")
    assert both.splits() == ["extra"] and both.count("extra") == 2
    assert [r.caption_id for r in both.records("extra")] == ["coco-50", "coco-70"]
    assert [r.image.path for r in both.records("extra")] == [
        str(tmp_path / "COCO_val2014_000000000005.jpg"), str(tmp_path / "COCO_test2015_000000000007.jpg")]


def test_karpathy_format_is_detected_and_names_the_splits(tmp_path):
    root = tmp_path / "coco"
    _jpeg(root / "val2014" / "COCO_val2014_000000391895.jpg")
    _jpeg(root / "train2014" / "COCO_train2014_000000000009.jpg")
    ann = _write_json(tmp_path / "dataset_coco.json", {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0, "split": "test",
         "cocoid": 391895, "sentences": [{"tokens": ["a"], "raw": "A man rides.", "imgid": 0, "sentid": 770337},
                                         {"tokens": ["b"], "raw": "Someone on a bike.", "imgid": 0, "sentid": 771687}]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "imgid": 1, "split": "train",
         "cocoid": 9, "sentences": [{"raw": "Food in bowls.", "sentid": 661611}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "imgid": 2, "split": "restval",
         "cocoid": 42, "sentences": [{"raw": "Zwei Hunde.", "sentid": 5, "language": "de"}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000073.jpg", "imgid": 3, "split": "val",
         "cocoid": 73, "sentences": [{"raw": "A kitchen.", "sentid": 6}]},
    ]})
    src = CocoSource([ann], root)
    assert src.splits() == ["test", "train", "val"]
    assert [src.count(s) for s in src.splits()] == [2, 2, 1]
    img = root / "val2014" / "COCO_val2014_000000391895.jpg"
    assert list(src.records("test")) == [
        SourceRecord(FileImage(str(img)), "A man rides.", "en", "391895", "coco-770337", "test",
                     meta={"karpathy_split": "test"}),
        SourceRecord(FileImage(str(img)), "Someone on a bike.", "en", "391895", "coco-771687", "test",
                     meta={"karpathy_split": "test"}),
    ]
    assert list(src.records("train")) == [
        SourceRecord(FileImage(str(root / "train2014" / "COCO_train2014_000000000009.jpg")), "Food in bowls.", "en",
                     "9", "coco-661611", "train", meta={"karpathy_split": "train"}),
        SourceRecord(FileImage(str(root / "val2014" / "COCO_val2014_000000000042.jpg")), "Zwei Hunde.", "de",
                     "42", "coco-5", "train", meta={"karpathy_split": "restval"}),
    ]
    assert [r.caption for r in src.records("val")] == ["A kitchen."]


def test_karpathy_flickr_files_have_no_filepath_or_cocoid(tmp_path):
    _jpeg(tmp_path / "flickr" / "1000092795.jpg")
    ann = _write_json(tmp_path / "dataset_flickr30k.json", {"images": [
        {"filename": "1000092795.jpg", "imgid": 0, "split": "train", "sentences": [{"raw": "Two men.", "sentid": 0}]}]})
    assert list(CocoSource([ann], tmp_path / "flickr").records("train")) == [SourceRecord(
        FileImage(str(tmp_path / "flickr" / "1000092795.jpg")), "Two men.", "en", "0", "coco-0", "train",
        meta={"karpathy_split": "train"})]


def test_config_errors(official, tmp_path):
    ann, images = official
    unnamed = _write_json(tmp_path / "captions.json", {"images": [], "annotations": []})
    with pytest.raises(ValueError, match=r"cannot tell the split of .*captions\.json.*--split"):
        CocoSource([unnamed], images)
    with pytest.raises(ValueError, match=r"--split: invalid split name 'Train'"):
        CocoSource([ann], images, split="Train")
    with pytest.raises(ValueError, match=r"--language: 'xx-nonsense-123' is not a valid"):
        CocoSource([ann], images, language="xx-nonsense-123")
    with pytest.raises(ValueError, match=r"--images: no such directory"):
        CocoSource([ann], tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"--images: give one folder, or one per --annotations file \(1\), not 2"):
        CocoSource([ann], [images, images])
    other = _write_json(tmp_path / "other_train.json", {"data": []})
    with pytest.raises(ValueError, match=r"other_train.json: neither COCO captions .* nor Karpathy splits"):
        CocoSource([other], images)
    karpathy = _write_json(tmp_path / "dataset_coco.json", {"images": [
        {"filename": "a.jpg", "split": "Bad Split", "sentences": []}]})
    with pytest.raises(ValueError, match=r"image 0: invalid split name 'Bad Split'"):
        CocoSource([karpathy], images)
    karpathy.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "val", "sentences": []}]}))
    with pytest.raises(ValueError, match=r"Karpathy split file"):
        CocoSource([karpathy], images, split="val")


def test_from_args_through_a_real_parser(official):
    ann, images = official
    parser = argparse.ArgumentParser()
    CocoSource.add_arguments(parser)
    args = parser.parse_args(["--annotations", str(ann), "--images", str(images), "--split", "dev", "--language", "EN"])
    src = CocoSource.from_args(args)
    assert src.splits() == ["dev"]
    assert [(r.caption_id, r.language, r.split) for r in src.records("dev")] == [
        ("coco-10", "en", "dev"), ("coco-11", "de", "dev"), ("coco-12", "en", "dev"), ("coco-13", "fr", "dev"),
        ("coco-14", "en", "dev")]
    st = ann.stat()
    assert src.describe() == {"source": "coco", "annotations": [str(ann.resolve())], "images": [str(images.resolve())],
                              "split": "dev", "language": "en",
                              "input_files": {str(ann.resolve()): {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                                                   "sha256": hashlib.sha256(ann.read_bytes()).hexdigest()}}}
    with pytest.raises(SystemExit):
        parser.parse_args(["--images", str(images)])  # --annotations is required


def test_translation_groups_from_the_caption_field_or_by_image(official, tmp_path):
    ann, images = official
    data = json.loads(ann.read_text())
    data["annotations"][0]["translation_group"] = "square-1"
    data["annotations"][3]["translation_group"] = "square-1"
    data["annotations"][1]["translation_group"] = 5  # numbers are ids too
    _write_json(ann, data)
    groups = [r.translation_group for r in CocoSource([ann], images).records("train")]
    assert groups == ["square-1", "5", None, "square-1", None]
    by_image = CocoSource([ann], images, group_by="image")  # the field wins where there is one
    assert [r.translation_group for r in by_image.records("train")] == ["square-1", "5", "99", "square-1", "2"]
    assert by_image.describe()["group_by"] == "image" and "group_by" not in CocoSource([ann], images).describe()
    karpathy = _write_json(tmp_path / "dataset_coco.json", {"images": [
        {"filename": "a.jpg", "filepath": "val2014", "split": "test", "cocoid": 7, "sentences": [
            {"raw": "A cat.", "sentid": 1, "translation_group": "g"},
            {"raw": "Eine Katze.", "sentid": 2, "language": "de"}]}]})
    assert [r.translation_group for r in CocoSource([karpathy], tmp_path).records("test")] == ["g", None]
    parser = argparse.ArgumentParser()
    CocoSource.add_arguments(parser)
    args = parser.parse_args(["--annotations", str(karpathy), "--images", str(tmp_path), "--group-by", "image"])
    assert [r.translation_group for r in CocoSource.from_args(args).records("test")] == ["g", "7"]
