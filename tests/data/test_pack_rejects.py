"""A bad record is a counted reject, never a crashed or hung run: odd images, special files, image
modes, ids, invisible captions and language tags, each packed next to valid records."""

from __future__ import annotations

import io
import os
import signal
import unicodedata

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dist_train.data import images
from dist_train.data.languages import UnknownLanguage, canonical_language
from dist_train.data.pack import REJECT_REASONS, PackOptions, pack
from dist_train.data.schema import MAX_KEY_LENGTH, sample_key
from dist_train.data.sources.base import BytesImage, FileImage, SourceRecord

from .test_pack import ListSource, jpeg_bytes, rec, written_samples


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _pack(tmp_path, records, **options) -> tuple[dict, dict[str, tuple[str, str]]]:
    """Pack one train split; (summary, caption id -> (reason, detail)) with the counts checked."""
    out = tmp_path / "out"
    summary = pack(ListSource({"train": records}), out, PackOptions(**{"workers": 0, "progress": False, **options}))
    t = summary["totals"]
    assert t["read"] == len(records) == t["written"] + t["rejected"]
    rows = pq.read_table(out / "rejects.parquet").to_pylist()
    assert all(r["reason"] in REJECT_REASONS for r in rows)
    return summary, {r["caption_id"]: (r["reason"], r["detail"]) for r in rows}


@pytest.fixture
def deadline():
    """A regression that blocks (a FIFO read) fails the test instead of hanging the suite."""
    def expire(*_):
        raise TimeoutError("the packer blocked on a special file")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------- images


class CrashingImage:
    """An image whose reading kills the process, as a crash inside a C decoder does (os._exit: no Python
    exception, no cleanup)."""

    def read(self):
        os._exit(70)


def test_an_image_that_kills_its_worker_process_is_rejected_and_the_others_are_kept(tmp_path):
    records = [rec(i, BytesImage(jpeg_bytes(colour=(i * 9 % 255, 10, 10)))) for i in range(40)]
    records[13].image = CrashingImage()
    records[27].image = CrashingImage()
    summary, rejects = _pack(tmp_path, records, workers=2, chunk_size=4)
    assert rejects == {"cap13": ("worker_crashed", rejects["cap13"][1]), "cap27": ("worker_crashed", rejects["cap27"][1])}
    assert "died" in rejects["cap13"][1]
    written = [s.caption_id for s in written_samples(tmp_path / "out", "train")]
    assert written == [f"cap{i}" for i in range(40) if i not in (13, 27)]  # every other record, in input order



@pytest.mark.parametrize("workers", [0, 1], ids=["inline", "worker"])
def test_an_image_too_wide_for_jpeg_is_a_reject_and_max_side_lets_it_through(tmp_path, workers):
    wide = _png(Image.new("L", (70_000, 1), 128))
    records = [rec(0, BytesImage(jpeg_bytes())), rec(1, BytesImage(wide)), rec(2, BytesImage(jpeg_bytes()))]
    summary, rejects = _pack(tmp_path, records, workers=workers)
    assert rejects["cap1"][0] == "unencodable_image" and "65535" in rejects["cap1"][1]
    assert [s.caption_id for s in written_samples(tmp_path / "out", "train")] == ["cap0", "cap2"]

    summary = pack(ListSource({"train": records}), tmp_path / "shrunk",
                   PackOptions(workers=workers, max_side=1000, progress=False))
    assert summary["totals"]["written"] == 3
    assert (written_samples(tmp_path / "shrunk", "train")[1].width,) == (1000,)


class _RaisingImage:
    """An image reference whose read fails with an error no check foresaw (a source's own bug)."""

    def read(self, max_bytes=None):
        raise KeyError("no such member")


def test_any_exception_of_reading_one_image_is_that_image_s_reject(tmp_path):
    records = [rec(0, _RaisingImage()), rec(1, BytesImage(jpeg_bytes())), rec(2, "not an image reference")]
    _, rejects = _pack(tmp_path, records)
    assert rejects["cap0"] == ("unreadable_image", "KeyError: 'no such member'")
    assert rejects["cap2"][0] == "missing_image" and "of type str" in rejects["cap2"][1]
    assert [s.caption_id for s in written_samples(tmp_path / "out", "train")] == ["cap1"]


def test_special_files_are_rejected_without_blocking_or_reading_forever(tmp_path, deadline):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    big = tmp_path / "big.jpg"
    big.write_bytes(jpeg_bytes(64, 64) + bytes(5000))
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(jpeg_bytes())
    records = [rec(0, FileImage(str(fifo))), rec(1, FileImage(str(ok))), rec(2, FileImage(str(zero))),
               rec(3, FileImage(str(big))), rec(4, BytesImage(bytes(5000) + jpeg_bytes()))]
    _, rejects = _pack(tmp_path, records, max_image_bytes=4000)
    assert rejects["cap0"] == ("unreadable_image", f"{fifo} is not a regular file")
    assert rejects["cap2"] == ("unreadable_image", f"{zero} is not a regular file")
    assert rejects["cap3"][0] == rejects["cap4"][0] == "image_too_large"
    assert "> 4000 (--max-image-bytes)" in rejects["cap3"][1]
    assert [s.caption_id for s in written_samples(tmp_path / "out", "train")] == ["cap1"]


def _grey_out(sample) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB")).astype(int)


def test_image_modes_are_converted_by_what_their_values_mean(tmp_path):
    x = np.arange(64)
    ramp16 = np.tile((x * 4 * 257).astype(np.uint16), (8, 1))  # 8-bit value x * 4, as 16 bits
    ramp01 = np.tile((x / 63).astype(np.float32), (8, 1))
    cases = {  # caption id -> (image bytes, expected grey ramp or RGB colour)
        "i16": (_png(Image.fromarray(ramp16)), x * 4),
        "i16b": (_png(Image.frombytes("I;16B", (64, 8), ramp16.astype(">u2").tobytes()), "TIFF"), x * 4),
        "i32": (_png(Image.fromarray(ramp16.astype(np.int32)), "TIFF"), x * 4),
        "f01": (_png(Image.fromarray(ramp01), "TIFF"), np.rint(x / 63 * 255)),
        "f_range": (_png(Image.fromarray(ramp01 * 4 - 1), "TIFF"), np.rint(x / 63 * 255)),  # -1..3 stretched
        "lab_red": (_png(Image.new("LAB", (8, 8), (136, 208, 195)), "TIFF"), (255, 0, 0)),  # L*53 a*80 b*67
        "lab_white": (_png(Image.new("LAB", (8, 8), (255, 128, 128)), "TIFF"), (255, 255, 255)),
        "cmyk": (_png(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), (255, 0, 0)),
        "ycbcr": (_png(Image.new("YCbCr", (8, 8), (76, 85, 255)), "JPEG"), (255, 0, 0)),
    }
    assert Image.open(io.BytesIO(cases["i16b"][0])).mode == "I;16B"
    assert Image.open(io.BytesIO(cases["i32"][0])).mode == "I"
    records = [rec(i, BytesImage(data), caption_id=name) for i, (name, (data, _)) in enumerate(cases.items())]
    summary, rejects = _pack(tmp_path, records)
    assert rejects == {}
    for sample in written_samples(tmp_path / "out", "train"):
        pixels, expected = _grey_out(sample), cases[sample.caption_id][1]
        if isinstance(expected, tuple):
            assert np.abs(pixels[4, 4] - expected).max() <= 12, (sample.caption_id, pixels[4, 4])
        else:
            assert np.abs(pixels[4, :, 0] - expected).max() <= 4, (sample.caption_id, pixels[4, :, 0])


def test_a_mode_without_a_faithful_conversion_is_rejected(tmp_path):
    """Pillow 13 has a conversion for every mode it decodes, so the image here is a real one relabelled
    with a mode name Pillow does not know: what a future or plugin-made mode would look like."""

    class OddMode:
        def read(self, max_bytes=None):
            img = Image.new("L", (4, 4))
            img._mode = "XYZ;12"
            return img

    _, rejects = _pack(tmp_path, [rec(0, OddMode()), rec(1, BytesImage(jpeg_bytes()))])
    assert rejects == {"cap0": ("unsupported_image_mode", "mode XYZ;12 has no faithful conversion to RGB")}


def test_reencode_raises_only_image_rejected():
    with pytest.raises(images.ImageRejected) as e:
        images.reencode(12345)
    assert e.value.reason == "undecodable_image"


# ---------------------------------------------------------------------------------------------- ids


def test_ids_are_nfc_and_non_ascii_ids_keep_distinct_keys(tmp_path):
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    img = BytesImage(jpeg_bytes())
    records = [rec(0, img, caption_id=composed), rec(1, img, caption_id=decomposed), rec(2, img, caption_id="猫"),
               rec(3, img, caption_id="犬"), rec(4, img, caption_id="plain-id_7"), rec(5, img, caption_id="x" * 300)]
    _, rejects = _pack(tmp_path, records)
    assert rejects["cafe\u0301"][0] == "duplicate_id"
    samples = written_samples(tmp_path / "out", "train")
    assert [s.caption_id for s in samples] == [composed, "猫", "犬", "plain-id_7", "x" * 300]
    keys = [s.key for s in samples]
    assert len(set(keys)) == 5 and keys[3] == "plain-id_7"  # safe ids keep their key
    assert keys[1] != keys[2] and keys[1].startswith("_-") and len(keys[1]) == 14
    assert all(len(k) <= MAX_KEY_LENGTH for k in keys)
    assert sample_key("é" * 200) != sample_key("è" * 200) and len(sample_key("é" * 200)) == MAX_KEY_LENGTH


# ----------------------------------------------------------------------------------------- captions


@pytest.mark.parametrize("caption", [
    "\u200b\u200c\u200d", "\u2060\ufeff", "\u200e\u200f", "\u202a\u202b\u202c\u202d\u202e", "\u2066\u2067\u2068\u2069",
    "\u0301\u0308", "\u00a0\u3000\u2003", "\x00\x07", "\u3164", " \u200b \u0301 ",
], ids=["zero-width", "word-joiner-bom", "lrm-rlm", "bidi-embeddings", "bidi-isolates", "combining-only",
        "other-spaces", "controls", "hangul-filler", "mixed"])
def test_captions_without_a_visible_character_are_empty(tmp_path, caption):
    img = BytesImage(jpeg_bytes())
    _, rejects = _pack(tmp_path, [rec(0, img, caption=caption), rec(1, img, caption="e\u0301 visible\u200b")])
    assert rejects["cap0"][0] == "empty_caption"
    assert [s.caption for s in written_samples(tmp_path / "out", "train")] == ["e\u0301 visible\u200b"]


# ---------------------------------------------------------------------------------------- languages


@pytest.mark.parametrize("tag,canonical", [
    ("cmn", "zh"), ("arb", "ar"), ("zsm", "ms"), ("zh-cmn-Hans", "zh-Hans"), ("en-u-ca-gregory", "en"),
    ("de-t-en", "de"), ("en-x-foo", "en"), ("pt_BR", "pt-BR"), ("sr-Latn", "sr-Latn"), ("eng", "en"),
])
def test_language_tags_fold_macrolanguages_and_drop_extensions(tag, canonical):
    assert canonical_language(tag) == canonical


@pytest.mark.parametrize("tag,message", [
    ("x-foo", "private-use"), ("qaa", "private-use"), ("qtz", "private-use"), ("QAB", "private-use"),
    ("und", "no particular language"), (42, "of type int"),
])
def test_private_use_and_non_string_language_tags_are_refused(tag, message):
    with pytest.raises(UnknownLanguage, match=message):
        canonical_language(tag)


def test_private_use_language_is_a_reject_with_its_detail(tmp_path):
    img = BytesImage(jpeg_bytes())
    _, rejects = _pack(tmp_path, [rec(0, img, language="x-klingon"), rec(1, img, language="cmn"),
                                  rec(2, img, language=7)])
    assert rejects["cap0"] == ("unknown_language", "'x-klingon' is a private-use tag: it names no registered language")
    assert rejects["cap2"][0] == "unknown_language" and "of type int" in rejects["cap2"][1]
    assert [s.language for s in written_samples(tmp_path / "out", "train")] == ["zh"]


# ---------------------------------------------------------------------------------- record fields


def test_fields_of_the_wrong_type_from_any_source_are_rejects(tmp_path):
    img = BytesImage(jpeg_bytes())
    records = [
        rec(0, img, caption=5),
        rec(1, img, caption=["a", "list"]),
        SourceRecord(img, "a caption", "en", "img2", ["not", "an", "id"], "train"),
        SourceRecord(img, "a caption", "en", {"image": "dict"}, "cap3", "train"),
        SourceRecord(img, "a caption", "en", "img4", "cap4", "train", meta={"bytes": b"\xff"}),  # not JSON
        SourceRecord(img, "a caption", "en", "img5", "cap5", "train", translation_group=["g"]),
        SourceRecord(img, "a caption", "en", "img6", "cap6", "train", defect=("duplicate_member", "seen twice")),
        rec(7, img),
    ]
    _, rejects = _pack(tmp_path, records)
    assert {k: v[0] for k, v in rejects.items()} == {
        "cap0": "invalid_caption", "cap1": "invalid_caption", "['not', 'an', 'id']": "invalid_id",
        "cap3": "invalid_id", "cap4": "malformed_record", "cap5": "invalid_group", "cap6": "duplicate_member"}
    assert rejects["cap0"][1] == "caption is of type int (5), not text"
    assert rejects["cap3"][1].startswith("image id is of type dict")
    assert rejects["cap6"][1] == "seen twice"
    assert [s.caption_id for s in written_samples(tmp_path / "out", "train")] == ["cap7"]
