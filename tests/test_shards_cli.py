"""`dist-train shards inspect` cannot be driven by a dataset's text (captions and metadata are printed
escaped), and `dist-train shards stats` warns for each shard whose tar disagrees with its manifest.
Shards are written with the real ShardWriter, as a dataset from elsewhere would hold them."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dist_train.data.schema import Sample
from dist_train.data.shards import ShardWriter
from tests.conftest import run_cli

EVIL = "red\x1b[31m box\rgone \u202eevil\x1b[2J\u2028end\x9b"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_shard(root: Path, index: int, n: int, caption: str = "a red box") -> Path:
    writer = ShardWriter(root, "train", index)
    for i in range(n):
        sample = Sample(key=f"s{index}_{i:03d}", image=_jpeg(), caption=caption, language="en",
                        image_id=f"img{index}_{i}", caption_id=f"cap{index}_{i}", source="test", split="train",
                        width=8, height=6, meta={"note": f"m\x1b]0;title\x07{i}\u202e"})
        record = sample.to_wds()
        writer.write(sample, i, record)
    writer.commit(0, n, 0)
    return writer.tar


def test_inspect_prints_control_and_bidi_characters_escaped(tmp_path):
    _write_shard(tmp_path, 0, 2, EVIL)
    proc = run_cli("shards", "inspect", tmp_path, "-n", "1", "--meta")
    out = proc.stdout
    for raw in ("\x1b", "\r", "\u202e", "\u2028", "\x9b", "\x07"):
        assert raw not in out, repr(raw)
    assert "red\\x1b[31m box\\rgone \\u202eevil\\x1b[2J\\u2028end\\x9b" in out, out
    meta = out.split("meta:")[1]
    assert "\\u001b]0;title\\u0007" in meta and "\\u202e" in meta  # JSON's escapes, and ours for U+202E
    assert len(out.strip().splitlines()) == 3  # header, caption, meta: the caption's \r and U+2028 stay inside


def test_inspect_keeps_ordinary_text_of_any_script(tmp_path):
    text = "एक लाल डिब्बा, صندوق أحمر, 赤い箱 \u200d"  # joiners stay: Devanagari needs them
    _write_shard(tmp_path, 0, 1, text)
    assert text in run_cli("shards", "inspect", tmp_path, "-n", "1").stdout


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    for index in range(3):
        _write_shard(root, index, 20)
    return root


def test_stats_warns_for_each_shard_whose_tar_disagrees_with_its_manifest(dataset, tmp_path):
    ok = run_cli("shards", "stats", dataset)
    assert "warning" not in ok.stderr and json.loads(run_cli("shards", "stats", dataset, "--json").stdout)[
        "warnings"] == []
    tars = sorted((dataset / "train").glob("*.tar"))
    truncated, replaced = tars[0], tars[1]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    other = tmp_path / "other"
    shutil.copyfile(_write_shard(other, 1, 5), replaced)  # another shard's tar under this manifest
    proc = run_cli("shards", "stats", dataset)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, proc.stderr
    assert str(truncated) in warnings[0] and "truncated" in warnings[0] and "20 samples" in warnings[0]
    assert str(replaced) in warnings[1] and "holds 5 sample(s)" in warnings[1] and "20 samples" in warnings[1]
    assert "train: 60 samples" in proc.stdout  # the counts are still the manifests'
    stats = json.loads(run_cli("shards", "stats", dataset, "--json").stdout)
    assert len(stats["warnings"]) == 2 and str(truncated) in stats["warnings"][0]


def test_stats_warns_for_a_tar_without_its_manifest(dataset):
    tar = sorted((dataset / "train").glob("*.tar"))[2]
    tar.with_suffix(".parquet").unlink()
    proc = run_cli("shards", "stats", dataset)
    assert f"warning: {tar}: no manifest" in proc.stderr and "train: 40 samples" in proc.stdout


def test_verify_and_inspect_take_brace_patterns_of_shards(dataset):
    tars = sorted((dataset / "train").glob("*.tar"))
    assert len(tars) >= 2
    pattern = str(dataset / "train" / "train-{000000..000001}.tar")
    ok = run_cli("shards", "verify", pattern)
    assert ok.stdout.strip().splitlines()[-1].startswith("OK 2 shard(s)")
    # a pattern naming a shard that is not there fails, naming it
    bad = run_cli("shards", "verify", str(dataset / "train" / "train-{000000..000003}.tar"), check=False)
    assert bad.returncode == 1 and f"FAIL {dataset / 'train' / 'train-000003.tar'} does not exist" in bad.stdout
    keys = run_cli("shards", "inspect", str(dataset / "train" / "train-{000001,000000}.tar"), "-n", "100").stdout
    first = [line.split()[0] for line in keys.splitlines() if line.startswith("train-")]
    assert first[0] == "train-000001.tar" and "train-000000.tar" in first  # in the pattern's order


def test_inspect_reads_a_pipe_command_and_verify_refuses_one(dataset):
    tar = sorted((dataset / "train").glob("*.tar"))[0]
    out = run_cli("shards", "inspect", f"pipe:cat {tar}", "-n", "2").stdout
    assert out.count("pipe s0_") == 2  # samples of shard 0, streamed from the command's output
    bad = run_cli("shards", "verify", f"pipe:cat {tar}", check=False)
    assert bad.returncode != 0 and "verify checks each shard against its manifest" in bad.stderr
    assert "Traceback" not in bad.stderr
