"""Malformed input files through `dist-train pack`: a wrong field is one record's reject, a wrong
file structure is a one-line error naming the file and key, and the counts always add up."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dist_train.cli import main


def _jpeg(path=None, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, format="JPEG")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["-q", "pack", *map(str, args), "--workers", "0"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _result(out) -> tuple[dict, dict[str, tuple[str, str]], list[str]]:
    """(totals, caption id -> (reason, detail), written caption ids), with read = written + rejected checked."""
    summary = json.loads((out / "summary.json").read_text())
    for s in summary["splits"].values():
        assert s["read"] == s["written"] + s["rejected"]
    rows = pq.read_table(out / "rejects.parquet").to_pylist()
    written = pq.read_table(out / "train" / "train-000000.parquet").column("caption_id").to_pylist() \
        if (out / "train" / "train-000000.parquet").exists() else []
    return summary["totals"], {r["caption_id"] or f"#{r['input_index']}": (r["reason"], r["detail"]) for r in rows}, written


def test_coco_fields_of_the_wrong_type_are_rejects(tmp_path, capsys):
    _jpeg(tmp_path / "imgs" / "1.jpg")
    ann = tmp_path / "captions_train.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": 5}, {"id": 3}, "not an image"],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "good one"},
            {"id": 11, "image_id": 1, "caption": 42},
            {"id": 12, "image_id": 2, "caption": "int file_name"},
            {"id": 13, "image_id": 3, "caption": "no file_name"},
            {"id": [14], "image_id": 1, "caption": "list id"},
            "not an annotation",
            {"id": 16, "image_id": 1, "caption": "bad language", "language": 3},
            {"id": 17, "image_id": 1, "caption": "good two"},
        ]}))
    code, err = _run(capsys, "coco", "--annotations", ann, "--images", tmp_path / "imgs", "--out", tmp_path / "out")
    assert code == 0, err
    totals, rejects, written = _result(tmp_path / "out")
    assert (totals["read"], totals["written"], totals["rejected"]) == (8, 2, 6)
    assert written == ["coco-10", "coco-17"]
    assert rejects["coco-11"] == ("invalid_caption", "captions_train.json: annotations[1]: caption is of type int (42), not text")
    assert rejects["coco-12"][0] == "missing_image" and "file_name of image 2 is of type int" in rejects["coco-12"][1]
    assert rejects["coco-13"][0] == "missing_image"
    assert rejects["#4"] == ("invalid_id", "captions_train.json: annotations[4]: id is of type list ([14]), not a string or an integer")
    assert rejects["#5"][0] == "malformed_record" and "of type str" in rejects["#5"][1]
    assert rejects["coco-16"][0] == "unknown_language" and "language is of type int" in rejects["coco-16"][1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["reason"] for e in summary["source_errors"]] == ["malformed_input"]  # images[3] is not an object


def test_karpathy_sentences_of_the_wrong_type_are_rejects(tmp_path, capsys):
    _jpeg(tmp_path / "imgs" / "a.jpg")
    split = tmp_path / "dataset_coco.json"
    split.write_text(json.dumps({"images": [
        {"filename": "a.jpg", "split": "train", "cocoid": 1, "sentences": [
            {"sentid": 1, "raw": "fine"}, {"sentid": 2, "raw": 7}, "not a sentence", {"sentid": 4, "raw": "fine too"}]},
        {"filename": "a.jpg", "split": "train", "cocoid": 2, "sentences": "a string, not a list"},
        {"filename": "a.jpg", "split": "train", "cocoid": [3], "sentences": [{"sentid": 5, "raw": "list cocoid"}]},
        "not an image",
    ]}))
    code, err = _run(capsys, "coco", "--annotations", split, "--images", tmp_path / "imgs", "--out", tmp_path / "out")
    assert code == 0, err
    totals, rejects, written = _result(tmp_path / "out")
    assert (totals["read"], totals["written"], totals["rejected"]) == (6, 2, 4)
    assert written == ["coco-1", "coco-4"]
    assert rejects["coco-2"] == ("invalid_caption", "dataset_coco.json: images[0].sentences[1]: raw is of type int (7), not text")
    assert rejects["#2"][0] == "malformed_record"
    assert rejects["#4"] == ("invalid_caption", "dataset_coco.json: images[1]: sentences is of type str, not a list")
    assert rejects["coco-5"][0] == "invalid_id" and "cocoid is of type list" in rejects["coco-5"][1]


@pytest.mark.parametrize("content,message", [
    ({"images": [], "annotations": {"id": 1}}, "'annotations' is of type dict, not a list"),
    ({"images": "x", "annotations": []}, "'images' is of type str, not a list"),
    ([1, 2], "the top level is of type list, not an object"),
    ("{not json", "not a JSON file"),
])
def test_a_coco_file_of_the_wrong_structure_is_a_one_line_error(tmp_path, capsys, content, message):
    ann = tmp_path / "captions_train.json"
    ann.write_text(content if isinstance(content, str) else json.dumps(content))
    (tmp_path / "imgs").mkdir()
    code, err = _run(capsys, "coco", "--annotations", ann, "--images", tmp_path / "imgs", "--out", tmp_path / "out")
    assert code == 2 and message in err and str(ann) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_table_columns_of_the_wrong_type_are_rejects(tmp_path, capsys):
    _jpeg(tmp_path / "a.jpg")
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "image": pa.array(["a.jpg", "a.jpg", "a.jpg", "a.jpg"]),
        "caption": pa.array([["a list"], ["fine"], ["x", "y"], []], pa.list_(pa.string())),
        "language": ["en", "en", "en", "en"],
    }), table)
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"image": [1.5, None], "caption": [1, 2], "language": ["en", "de"]}), ints)
    structs = tmp_path / "structs.parquet"
    pq.write_table(pa.table({"image": ["a.jpg", "a.jpg"], "caption": ["good", "good too"],
                             "language": ["en", "en"], "group": [{"g": 1}, None]}), structs)
    code, err = _run(capsys, "table", "--table", table, "--out", tmp_path / "lists")
    assert code == 0, err
    totals, rejects, written = _result(tmp_path / "lists")
    assert (totals["written"], totals["rejected"]) == (0, 4)
    assert rejects["t-1"] == ("invalid_caption", "t.parquet, row 1: column 'caption' is of type list (['a list']), not text")

    code, err = _run(capsys, "table", "--table", ints, "--out", tmp_path / "ints")
    assert code == 0, err
    totals, rejects, _ = _result(tmp_path / "ints")
    assert rejects["ints-1"][0] == "missing_image" and "column 'image' is of type float (1.5)" in rejects["ints-1"][1]
    assert rejects["ints-2"][0] == "invalid_caption" and "column 'caption' is of type int (2)" in rejects["ints-2"][1]

    code, err = _run(capsys, "table", "--table", structs, "--group-column", "group", "--out", tmp_path / "structs")
    assert code == 0, err
    totals, rejects, written = _result(tmp_path / "structs")
    assert rejects["structs-1"][0] == "invalid_group" and written == ["structs-2"]


def test_a_table_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"PAR1 but not really a parquet file")
    code, err = _run(capsys, "table", "--table", bad, "--out", tmp_path / "out")
    assert code == 2 and f"{bad}: cannot read it as parquet" in err and len(err.strip().splitlines()) == 1
    missing = tmp_path / "m.csv"
    missing.write_text("image,text\na.jpg,hello\n")
    code, err = _run(capsys, "table", "--table", missing, "--language", "en", "--out", tmp_path / "out")
    assert code == 2 and "--caption-column" in err and "has no column 'caption'" in err


def _tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_repeated_tar_member_loses_only_its_sample(tmp_path, capsys):
    shards = tmp_path / "web"
    shards.mkdir()
    _tar(shards / "00000.tar", [
        ("000000.jpg", _jpeg()), ("000000.txt", b"first"),
        ("000001.jpg", _jpeg()), ("000001.jpg", _jpeg()), ("000001.txt", b"twice"),
        ("000002.jpg", _jpeg()), ("000002.txt", b"after the repeat"),
        ("000003.jpg", _jpeg()),
        ("000004.jpg", _jpeg()), ("000004.txt", b"between"),
        ("000003.txt", b"split from its image"),
        ("000005.jpg", _jpeg()), ("000005.txt", b"last"),
    ])
    code, err = _run(capsys, "img2dataset", "--input", shards, "--language", "en", "--out", tmp_path / "out")
    assert code == 0, err
    totals, rejects, written = _result(tmp_path / "out")
    assert written == ["00000-000000", "00000-000002", "00000-000004", "00000-000005"]
    assert rejects["00000-000001"] == ("duplicate_member", "00000.tar: sample '000001': member '000001.jpg' appears twice")
    rows = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    sample3 = [(r["input_index"], r["reason"]) for r in rows if r["caption_id"] == "00000-000003"]
    assert sample3 == [(3, "empty_caption"), (5, "duplicate_member")]  # its image alone, then its caption alone
    assert "members of sample '000003' are not contiguous" in rows[-1]["detail"]
    assert (totals["read"], totals["written"], totals["rejected"]) == (7, 4, 3)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["source_errors"] == []
