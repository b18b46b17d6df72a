"""`dist-train pack` refuses bad options, a foreign --out and changed input before writing anything."""

from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from dist_train.cli import main
from dist_train.data.pack import PackError, PackOptions


@pytest.fixture
def table(tmp_path):
    """A two-row CSV table with its images."""
    for name in ("a.jpg", "b.jpg"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 6), (10, 200, 10)).save(buf, format="JPEG")
        (tmp_path / name).write_bytes(buf.getvalue())
    path = tmp_path / "t.csv"
    path.write_text("image,caption,language\na.jpg,a green box,en\nb.jpg,eine grüne Kiste,de\n")
    return path


def _pack(capsys, table, out, *extra) -> tuple[int, str]:
    code = main(["-q", "pack", "table", "--table", str(table), "--out", str(out), "--workers", "0", *map(str, extra)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip()


@pytest.mark.parametrize("option,value,message", [
    ("--max-side", "-5", "--max-side must be a positive number of pixels, got -5"),
    ("--max-side", "0", "--max-side must be a positive number of pixels, got 0"),
    ("--max-samples-per-shard", "0", "--max-samples-per-shard must be a positive number of samples, got 0"),
    ("--max-pixels", "0", "--max-pixels must be a positive number of pixels, got 0"),
    ("--jpeg-quality", "0", "--jpeg-quality must be a JPEG quality from 1 to 100, got 0"),
    ("--jpeg-quality", "101", "--jpeg-quality must be a JPEG quality from 1 to 100, got 101"),
    ("--max-shard-bytes", "1k", "--max-shard-bytes must be a number of bytes >= 10240, got 1024"),
    ("--max-image-bytes", "0", "--max-image-bytes must be a positive number of bytes, got 0"),
    ("--workers", "-1", "--workers must be a number of processes >= 0, got -1"),
])
def test_every_numeric_option_out_of_range_is_a_one_line_error_before_anything_is_written(
        tmp_path, capsys, table, option, value, message):
    out = tmp_path / "out"
    code, err = _pack(capsys, table, out, option, value)
    assert code == 2 and err == f"dist-train pack: error: {message}"
    assert not out.exists()


def test_options_in_the_library_name_their_field():
    with pytest.raises(PackError, match=r"^max_side must be a positive number of pixels, got -5$"):
        PackOptions(max_side=-5)
    with pytest.raises(PackError, match="workers"):
        PackOptions(workers=True)
    assert "max_image_bytes" not in PackOptions(workers=0).output_settings()  # old packs resume unchanged
    assert PackOptions(workers=0, max_image_bytes=10).output_settings()["max_image_bytes"] == 10


@pytest.mark.parametrize("make,message", [
    (lambda out: (out / "spm.model").write_bytes(b"x"), "holds a preprocessed dataset"),
    (lambda out: (out / "_preprocess").mkdir(), "holds a preprocessed dataset"),
    (lambda out: (out / "summary.json").write_text(json.dumps({"format": "other/2"})),
     "holds a summary.json of format 'other/2'"),
    (lambda out: (out / "notes.txt").write_text("mine"), "is not empty and holds no packer state (_pack/)"),
])
def test_an_out_folder_holding_something_else_is_refused_untouched(tmp_path, capsys, table, make, message):
    out = tmp_path / "out"
    out.mkdir()
    make(out)
    before = sorted(p.name for p in out.iterdir())
    code, err = _pack(capsys, table, out)
    assert code == 2 and err.startswith(f"dist-train pack: error: --out {out} ") and message in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_an_empty_out_folder_is_used_and_a_packed_one_resumes(tmp_path, capsys, table):
    out = tmp_path / "out"
    out.mkdir()
    assert _pack(capsys, table, out) == (0, "")
    assert _pack(capsys, table, out) == (0, "")
    assert json.loads((out / "summary.json").read_text())["totals"]["written"] == 2


def test_input_that_changed_since_the_first_run_is_refused_with_the_difference(tmp_path, capsys, table):
    out = tmp_path / "out"
    assert _pack(capsys, table, out)[0] == 0
    (out / "summary.json").unlink()
    (out / "_pack" / "done" / "train.json").unlink()  # as if it had crashed before finishing
    st = table.stat()
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content: fine
    assert _pack(capsys, table, out)[0] == 0

    content = table.read_text()
    table.write_text(content.replace("a green box", "a green cube"))  # one byte longer
    code, err = _pack(capsys, table, out)
    assert code == 2 and f"{table.resolve()} changed: size {len(content.encode())} -> {len(content.encode()) + 1} bytes" in err
    table.write_text(content.replace("a green box", "a green fox"))  # same size, other bytes
    code, err = _pack(capsys, table, out)
    assert code == 2 and f"{table.resolve()} changed: sha256 " in err and len(err.splitlines()) == 1
    assert "Use another --out" in err and "input_files" not in err
