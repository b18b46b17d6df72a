from __future__ import annotations

import argparse
import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dist_train.data.sources.base import FileImage, SourceRecord
from dist_train.data.sources.table import TableSource


def _jpeg(path, colour=(10, 200, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, format="JPEG")
    return path


def test_csv_rows_become_records_and_bad_rows_are_still_yielded(tmp_path):
    _jpeg(tmp_path / "imgs" / "a.jpg")
    elsewhere = _jpeg(tmp_path / "elsewhere" / "b.jpg")
    table = tmp_path / "captions.csv"
    table.write_bytes(
        b"image,caption,language,extra\n"
        b"imgs/a.jpg,\"A green square, small.\",en,1\n"
        + str(elsewhere).encode() + b",Ein Quadrat,de,2\n"
        b"imgs/a.jpg,bad \xff\xfe bytes,fr,3\n"
        b"imgs/a.jpg,,en,4\n"
        b",no image here,en,5\n"
        b"imgs/missing.jpg,Caf\xc3\xa9,,6\n"
    )
    src = TableSource(table)
    assert src.splits() == ["train"] and src.count("train") == 6
    a = FileImage(str(tmp_path / "imgs" / "a.jpg"))
    assert list(src.records("train")) == [
        SourceRecord(a, "A green square, small.", "en", "imgs/a.jpg", "captions-1", "train"),
        SourceRecord(FileImage(str(elsewhere)), "Ein Quadrat", "de", str(elsewhere), "captions-2", "train"),
        SourceRecord(a, b"bad \xff\xfe bytes", "fr", "imgs/a.jpg", "captions-3", "train"),
        SourceRecord(a, None, "en", "imgs/a.jpg", "captions-4", "train"),
        SourceRecord(None, "no image here", "en", "", "captions-5", "train"),
        SourceRecord(FileImage(str(tmp_path / "imgs" / "missing.jpg")), "Café", None, "imgs/missing.jpg",
                     "captions-6", "train"),
    ]
    assert list(src.records("val")) == []


def test_tsv_with_split_and_id_columns(tmp_path):
    _jpeg(tmp_path / "x.jpg")
    table = tmp_path / "data.tsv"
    table.write_text(
        "file\ttext\tlang\tsid\tcid\tpart\n"
        "x.jpg\tfirst, with a comma\ten\t007\t0001\tval\n"
        "x.jpg\tsecond\tde\t007\t0002\ttrain\n"
        "x.jpg\tthird\tfr\t008\t0003\tval\n",
        encoding="utf-8",
    )
    src = TableSource(table, image_column="file", caption_column="text", language_column="lang",
                      id_column="sid", caption_id_column="cid", split_column="part")
    assert src.splits() == ["val", "train"]
    assert (src.count("val"), src.count("train"), src.count("test")) == (2, 1, 0)
    x = FileImage(str(tmp_path / "x.jpg"))
    assert list(src.records("val")) == [
        SourceRecord(x, "first, with a comma", "en", "007", "0001", "val"),
        SourceRecord(x, "third", "fr", "008", "0003", "val"),
    ]
    assert list(src.records("train")) == [SourceRecord(x, "second", "de", "007", "0002", "train")]


def test_parquet_with_a_default_language_and_an_image_root(tmp_path):
    root = tmp_path / "images"
    _jpeg(root / "p" / "1.jpg")
    pq.write_table(pa.table({"image": ["p/1.jpg", "p/2.jpg", None], "caption": ["uno", "", "tres"],
                             "language": ["es", None, "es"]}), tmp_path / "t.parquet")
    src = TableSource(tmp_path / "t.parquet", language="it", split="test", image_root=root)
    assert src.splits() == ["test"]
    assert list(src.records("test")) == [
        SourceRecord(FileImage(str(root / "p" / "1.jpg")), "uno", "es", "p/1.jpg", "t-1", "test"),
        SourceRecord(FileImage(str(root / "p" / "2.jpg")), "", "it", "p/2.jpg", "t-2", "test"),
        SourceRecord(None, "tres", "es", "", "t-3", "test"),
    ]
    pq.write_table(pa.table({"image": ["p/1.jpg"], "caption": ["solo"]}), tmp_path / "nolang.pq")
    assert [r.language for r in TableSource(tmp_path / "nolang.pq", language="pt_BR").records("train")] == ["pt-BR"]


def test_an_invalid_split_value_is_a_config_error_naming_value_and_row(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("image,caption,language,split\na.jpg,x,en,train\nb.jpg,y,en,Validation Set\n")
    with pytest.raises(ValueError, match=r"t\.csv, row 2: --split-column: invalid split name 'Validation Set'"):
        TableSource(table, split_column="split")
    table.write_text("image,caption,language,split\na.jpg,x,en,train\nb.jpg,y,en,\n")
    with pytest.raises(ValueError, match=r"t\.csv, row 2: --split-column: invalid split name None"):
        TableSource(table, split_column="split")


def test_other_config_errors(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("image,caption\na.jpg,x\n")
    with pytest.raises(ValueError, match=r"--language-column: .*t\.csv has no column 'language' "
                                         r"\(its columns: image, caption\); name the language column, or pass"):
        TableSource(table)
    with pytest.raises(ValueError, match=r"--caption-column: .* has no column 'text'"):
        TableSource(table, caption_column="text", language="en")
    with pytest.raises(ValueError, match=r"--split: invalid split name 'a b'"):
        TableSource(table, language="en", split="a b")
    with pytest.raises(ValueError, match=r"--format: cannot tell the format"):
        TableSource(tmp_path / "t.csv", format="xlsx")
    (tmp_path / "t.txt").write_text("image,caption\n")
    with pytest.raises(ValueError, match=r"--format: cannot tell the format of .*t\.txt"):
        TableSource(tmp_path / "t.txt", language="en")
    assert TableSource(tmp_path / "t.txt", format="csv", language="en").count("train") == 0
    with pytest.raises(ValueError, match=r"--table: no such file"):
        TableSource(tmp_path / "missing.csv")


def test_from_args_through_a_real_parser(tmp_path):
    _jpeg(tmp_path / "imgs" / "a.jpg")
    table = tmp_path / "list.txt"
    table.write_bytes(b"path\tcap\tsplit\nimgs/a.jpg\tHallo\xff\tdev\n")
    parser = argparse.ArgumentParser()
    TableSource.add_arguments(parser)
    args = parser.parse_args(["--table", str(table), "--format", "tsv", "--image-column", "path",
                              "--caption-column", "cap", "--language", "de", "--split-column", "split",
                              "--image-root", str(tmp_path)])
    src = TableSource.from_args(args)
    assert list(src.records("dev")) == [
        SourceRecord(FileImage(str(tmp_path / "imgs" / "a.jpg")), b"Hallo\xff", "de", "imgs/a.jpg", "list-1", "dev")]
    assert src.describe() == {
        "source": "table", "table": str(table.resolve()), "format": "tsv",
        "columns": {"image": "path", "caption": "cap", "language": "language", "image_id": None,
                    "caption_id": None, "split": "split"},
        "language": "de", "split": None, "image_root": str(tmp_path.resolve()),
        "input_files": {str(table.resolve()): {"size": 37, "mtime_ns": table.stat().st_mtime_ns,
                                               "sha256": hashlib.sha256(table.read_bytes()).hexdigest()}},
    }


def test_translation_groups_from_a_column_or_by_image(tmp_path):
    _jpeg(tmp_path / "a.jpg")
    _jpeg(tmp_path / "b.jpg")
    table = tmp_path / "t.csv"
    table.write_text("image,caption,language,group\n"
                     "a.jpg,A red box.,en,007\n"
                     "a.jpg,Eine rote Kiste.,de,007\n"
                     "b.jpg,A blue box.,en,\n"
                     "b.jpg,Une boîte bleue.,fr, 8 \n", encoding="utf-8")
    by_column = TableSource(table, group_column="group")
    assert [r.translation_group for r in by_column.records("train")] == ["007", "007", None, "8"]
    assert by_column.describe()["columns"]["group"] == "group"
    by_image = TableSource(table, group_by="image")
    assert [r.translation_group for r in by_image.records("train")] == ["a.jpg", "a.jpg", "b.jpg", "b.jpg"]
    assert by_image.describe()["group_by"] == "image"
    with_ids = TableSource(table, id_column="group", group_by="image")  # the image id, not the path
    assert [r.translation_group for r in with_ids.records("train")] == ["007", "007", None, "8"]
    assert [r.translation_group for r in TableSource(table).records("train")] == [None] * 4  # none declared
    parser = argparse.ArgumentParser()
    TableSource.add_arguments(parser)
    src = TableSource.from_args(parser.parse_args(["--table", str(table), "--group-by", "image"]))
    assert [r.translation_group for r in src.records("train")] == ["a.jpg", "a.jpg", "b.jpg", "b.jpg"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--table", str(table), "--group-by", "image", "--group-column", "group"])
    with pytest.raises(ValueError, match=r"--group-column: .* has no column 'grp'"):
        TableSource(table, group_column="grp")
    with pytest.raises(ValueError, match=r"--group-column and --group-by: give one way"):
        TableSource(table, group_column="group", group_by="image")
    with pytest.raises(ValueError, match=r"--group-by: 'caption' is not one of image"):
        TableSource(table, group_by="caption")
