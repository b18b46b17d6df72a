"""A run folder in object storage (train/remote_run.py) against the real S3-compatible test server: what a
node pulls to resume, what an interrupted upload leaves, and the folders loading reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dist_train.storage import StorageError
from dist_train.train.remote_run import RemoteRun, default_staging_dir, fetch_for_loading, run_folder


def _checkpoint(local: Path, tag: str, ranks: int = 2) -> None:
    folder = local / "checkpoints" / tag
    folder.mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(tag.encode() * 10)
    for r in range(ranks):
        (folder / f"rank_{r:05d}.pt").write_bytes(f"{tag}-{r}".encode())
    (local / "checkpoints" / "latest").write_text(tag)


def _run_files(local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    (local / "config.yaml").write_text("seed: 0\n")
    (local / "model.yaml").write_text("model: globetrotter\n")
    (local / "spm.model").write_bytes(b"vocab")
    (local / "out.log").write_text("started\n")
    (local / "tb").mkdir(exist_ok=True)
    (local / "tb" / "events.out.tfevents.1").write_bytes(b"e1")


def test_push_then_pull_on_a_fresh_node_brings_the_latest_checkpoint_only(bucket, tmp_path):
    url = f"{bucket}/runs/x"
    a = RemoteRun(url, tmp_path / "a")
    _run_files(a.local)
    _checkpoint(a.local, "step00000002")
    a.push_step("step00000002")
    a.push_run("step00000002")
    _checkpoint(a.local, "step00000004")
    (a.local / "out.log").write_text("started\nstep 4\n")
    a.push_step("step00000004")
    a.push_run("step00000004")
    assert a.remote_tag() == "step00000004"

    b = RemoteRun(url, tmp_path / "b")
    assert b.pull() == "step00000004"
    assert (b.local / "checkpoints" / "latest").read_text() == "step00000004"
    assert sorted(p.name for p in (b.local / "checkpoints" / "step00000004").iterdir()) == [
        "mp_rank_00_model_states.pt", "rank_00000.pt", "rank_00001.pt"]
    assert not (b.local / "checkpoints" / "step00000002").exists()  # only what the resume reads
    assert (b.local / "out.log").read_text() == "started\nstep 4\n"
    assert (b.local / "tb" / "events.out.tfevents.1").read_bytes() == b"e1"
    # resume_from an older tag brings that one too
    assert b.pull(resume_from="step00000002") == "step00000004"
    assert (b.local / "checkpoints" / "step00000002" / "rank_00001.pt").read_bytes() == b"step00000002-1"


def test_a_file_replaced_at_the_same_size_is_uploaded_again(bucket, tmp_path):
    url = f"{bucket}/runs/best"
    a = RemoteRun(url, tmp_path / "a")
    _run_files(a.local)
    (a.local / "best").mkdir()
    (a.local / "best" / "model.safetensors").write_bytes(b"weights-1")
    _checkpoint(a.local, "step00000002")
    a.push_step("step00000002")
    a.push_run("step00000002")
    (a.local / "best" / "model.safetensors").write_bytes(b"weights-2")  # a better evaluation, same size
    _checkpoint(a.local, "step00000004")
    a.push_step("step00000004")
    a.push_run("step00000004")
    b = RemoteRun(url, tmp_path / "b")
    b.pull()
    assert (b.local / "best" / "model.safetensors").read_bytes() == b"weights-2"
    # what a node pulled is not sent back unchanged, and what it changes after the pull is
    (b.local / "spm.model").write_bytes(b"VOCAB")
    sent, put = [], b._put
    b._put = lambda rel: (sent.append(rel), put(rel))  # a spy: every upload still goes to the store
    b.push_run()
    assert "best/model.safetensors" not in sent and "out.log" not in sent
    assert a.fs.cat_file(a._remote("spm.model")) == b"VOCAB"


def test_an_upload_cut_before_the_pointer_leaves_the_previous_checkpoint(bucket, tmp_path):
    url = f"{bucket}/runs/y"
    a = RemoteRun(url, tmp_path / "a")
    _run_files(a.local)
    _checkpoint(a.local, "step00000002")
    a.push_step("step00000002")
    a.push_run("step00000002")
    _checkpoint(a.local, "step00000004")
    a.push_step("step00000004")  # the job dies here: its files are up, the pointer is not
    b = RemoteRun(url, tmp_path / "b")
    assert b.pull() == "step00000002"
    assert (b.local / "checkpoints" / "latest").read_text() == "step00000002"
    assert not (b.local / "checkpoints" / "step00000004").exists()


def test_pruned_step_folders_are_deleted_from_the_store(bucket, tmp_path):
    import s3fs

    url = f"{bucket}/runs/z"
    a = RemoteRun(url, tmp_path / "a")
    _run_files(a.local)
    for tag in ("step00000002", "step00000004"):
        _checkpoint(a.local, tag)
        a.push_step(tag)
        a.push_run(tag)
    import shutil

    shutil.rmtree(a.local / "checkpoints" / "step00000002")  # what ckpt.prune did locally
    _checkpoint(a.local, "step00000006")
    a.push_step("step00000006")
    a.push_run("step00000006")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{url.removeprefix('s3://')}/checkpoints"))
    assert names == ["latest", "step00000004", "step00000006"]


def test_a_fresh_run_pulls_nothing(bucket, tmp_path):
    assert RemoteRun(f"{bucket}/runs/new", tmp_path / "s").pull() is None
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_a_pointer_that_is_not_a_tag_is_refused(bucket, tmp_path):
    import s3fs

    url = f"{bucket}/runs/bad"
    s3fs.S3FileSystem(skip_instance_cache=True).pipe(f"{url.removeprefix('s3://')}/checkpoints/latest", b"../../etc")
    with pytest.raises(StorageError, match="is not a checkpoint tag"):
        RemoteRun(url, tmp_path / "s").pull()


def test_fetch_for_loading_mirrors_run_checkpoints_and_step_folders(bucket, tmp_path):
    url = f"{bucket}/runs/load"
    a = RemoteRun(url, tmp_path / "a")
    _run_files(a.local)
    _checkpoint(a.local, "step00000002")
    a.push_step("step00000002")
    a.push_run("step00000002")
    got = fetch_for_loading(f"{url}/checkpoints", tmp_path / "c")
    assert got == tmp_path / "c" / "checkpoints"
    assert (got / "latest").read_text() == "step00000002"
    assert (got / "step00000002" / "rank_00000.pt").is_file() and (got.parent / "model.yaml").is_file()
    got = fetch_for_loading(f"{url}/checkpoints/step00000002", tmp_path / "d")
    assert got == tmp_path / "d" / "checkpoints" / "step00000002" and (got / "mp_rank_00_model_states.pt").is_file()
    with pytest.raises(FileNotFoundError, match="neither an exported model"):
        fetch_for_loading(f"{bucket}/nothing-here", tmp_path / "e")


def test_staging_folders_of_urls():
    a, b = default_staging_dir("s3://bucket/runs/x"), default_staging_dir("s3://bucket/runs/x/")
    assert a.parts[-4:-1] == ("s3", "bucket", "runs") and a.name.startswith("x-")
    assert a == b  # a trailing slash names the same run
    assert default_staging_dir("s3://bucket/runs/x_") != default_staging_dir("s3://bucket/runs/x?")
    assert ".." not in default_staging_dir("s3://b/../../etc").parts
    assert run_folder("runs/local") == Path("runs/local")
    assert run_folder("s3://b/r", "/scratch/r") == Path("/scratch/r")
