"""A run folder in object storage (`out_dir=s3://bucket/runs/x`), staged on each node's local disk.

DeepSpeed and TensorBoard write local files, so a run whose out_dir is a URL runs in a local staging
folder (`checkpoint.staging_dir`, default `~/.cache/dist_train/runs/<the URL's host and path>`) and the
store holds its copy, as open_clip's `--remote-sync` keeps one:

* at start, the local rank 0 of every node pulls what a resume needs: config.yaml, model.yaml,
  spm.model, out.log, tb/, the `checkpoints/latest` pointer and the step folder it names (or the one
  `checkpoint.resume_from` names). Files whose size already matches are not fetched again.
* after each checkpoint, the local rank 0 of every node uploads the step folder's files written on that
  node; after a barrier rank 0 uploads the run's other files, then `checkpoints/latest` last, and
  deletes the step folders that were pruned. A crash mid-upload leaves the store's pointer at the previous
  complete checkpoint, so a run resumed from the store (on any node) never loads a half-uploaded one.

Reading a run or an export from a URL (`dist-train eval --checkpoint s3://...`, `export`) downloads what
loading reads into a local folder first: `fetch_for_loading`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

from dist_train.storage import StorageError, describe, is_url

log = logging.getLogger(__name__)

EXPORT_FILES = ("model.safetensors", "image_encoder.safetensors", "spm.model", "config.yaml")
TAG = re.compile(r"step\d{8,}")


def _fs(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def default_staging_dir(url: str) -> Path:
    """~/.cache/dist_train/runs/<host>/<path> of the URL (its characters that are unsafe in a file name
    replaced), plus a short hash of the whole URL so that two URLs never share a folder."""
    url = url.rstrip("/")
    protocol, _, rest = describe(url).partition("://")
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", rest).strip("/") or "run"
    parts = [p for p in safe.split("/") if p not in ("", ".", "..")]
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dist_train" / "runs" / protocol / Path(*parts).with_name(f"{parts[-1]}-{digest}")


def run_folder(out_dir: str, staging_dir: str | None = None) -> Path:
    """The local folder a run writes: `out_dir` itself, or the staging folder of a URL."""
    if not is_url(out_dir):
        return Path(out_dir)
    return Path(staging_dir) if staging_dir else default_staging_dir(out_dir)


class RemoteRun:
    """The store's copy of a run folder (`url`) and its local staging folder (`local`)."""

    def __init__(self, url: str, local: str | Path):
        if not is_url(url):
            raise StorageError(f"{url!r} is not a URL")
        self.url = url.rstrip("/")
        self.local = Path(local)
        self.fs, self.root = _fs(self.url)
        # files written since (a pull, the previous push) are uploaded even at an unchanged size: the best
        # weights an evaluation keeps are replaced by a file of the same size
        self._changed_since = time.time()

    def _remote(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _size(self, rel: str) -> int | None:
        try:
            return int(self.fs.info(self._remote(rel))["size"])
        except FileNotFoundError:
            return None

    def _get(self, rel: str, always: bool = False) -> bool:
        """Download `rel` unless the local copy has the same size (`always`: small files that change in
        place, the pointer and the configs); False when the store does not have it."""
        size = self._size(rel)
        if size is None:
            return False
        dest = self.local / rel
        if not always and dest.is_file() and dest.stat().st_size == size:
            return True
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        self.fs.get_file(self._remote(rel), str(tmp))
        tmp.replace(dest)
        return True

    def _put(self, rel: str) -> None:
        self.fs.put_file(str(self.local / rel), self._remote(rel))

    def remote_tag(self) -> str | None:
        """The tag the store's `checkpoints/latest` names, None when it has none."""
        try:
            tag = self.fs.cat_file(self._remote("checkpoints/latest")).decode().strip()
        except FileNotFoundError:
            return None
        if not TAG.fullmatch(tag):
            raise StorageError(f"{describe(self.url)}/checkpoints/latest: {tag[:40]!r} is not a checkpoint tag")
        return tag

    def _files(self) -> list[str]:
        """The store's files of the run, relative to it."""
        try:
            return [f[len(self.root) + 1:] for f in self.fs.find(self.root)]
        except FileNotFoundError:
            return []

    def pull(self, resume_from: str | None = None) -> str | None:
        """Bring the files a resume reads to the staging folder: everything but the step folders that
        are not resumed from; returns the tag fetched (None: the store holds no checkpoint, a fresh run)."""
        tag = self.remote_tag()
        tags = {tag, resume_from} - {None}
        for rel in self._files():
            parts = rel.split("/")
            if parts[0] == "checkpoints" and (len(parts) < 3 or parts[1] not in tags):
                continue
            self._get(rel, always=rel.endswith((".yaml", ".json")))
        if tag is not None:
            self._get("checkpoints/latest", always=True)  # last: the staging folder is whole once it is there
            log.info("pulled checkpoint %s of %s into %s", tag, describe(self.url), self.local)
        self._changed_since = time.time()
        return tag

    def push_step(self, tag: str) -> None:
        """Upload the files of step folder `tag` written on this node (what the local staging holds)."""
        folder = self.local / "checkpoints" / tag
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                self._put(f.relative_to(self.local).as_posix())

    def push_run(self, tag: str | None = None) -> None:
        """Upload the run's files outside checkpoints/ (configs, vocabulary, log, TensorBoard, evaluation
        outputs) that are new or changed; then, with `tag`, the pointer to it (last, once every node has
        uploaded its part) and delete the step folders no longer kept locally."""
        started = time.time()
        for f in sorted(self.local.rglob("*")):
            rel = f.relative_to(self.local).as_posix()
            if not f.is_file() or rel.startswith("checkpoints/") or ".part-" in f.name:
                continue
            stat = f.stat()
            if (rel.endswith((".yaml", ".json")) or stat.st_mtime >= self._changed_since
                    or self._size(rel) != stat.st_size):
                self._put(rel)
        self._changed_since = started
        if tag is None:
            return
        self.fs.pipe_file(self._remote("checkpoints/latest"), tag.encode())
        kept = {p.name for p in (self.local / "checkpoints").iterdir() if p.is_dir()}
        try:
            remote_tags = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._remote("checkpoints"),
                                                                                  detail=False)]
        except FileNotFoundError:
            remote_tags = []
        for old in remote_tags:
            if TAG.fullmatch(old) and old not in kept and old != tag:
                self.fs.rm(self._remote(f"checkpoints/{old}"), recursive=True)


def fetch_for_loading(url: str, local: str | Path) -> Path:
    """Download a run folder, its checkpoints folder, one step folder or an export folder at `url` (what
    `load_model` and `export` read) into `local`; returns the local path that mirrors `url`."""
    fs, root = _fs(url)
    local = Path(local)

    def get(remote: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(dest))

    def exists(remote: str) -> bool:
        return fs.exists(remote)

    if exists(f"{root}/model.safetensors"):
        for name in EXPORT_FILES:
            if exists(f"{root}/{name}"):
                get(f"{root}/{name}", local / name)
        return local
    name = root.rsplit("/", 1)[-1]
    if exists(f"{root}/checkpoints/latest"):
        run, checkpoints, tag = root, f"{root}/checkpoints", None
        target = local
    elif exists(f"{root}/latest"):
        run, checkpoints, tag = root.rsplit("/", 1)[0], root, None
        target = local / "checkpoints"
    elif TAG.fullmatch(name):
        checkpoints = root.rsplit("/", 1)[0]
        run, tag = checkpoints.rsplit("/", 1)[0], name
        target = local / "checkpoints" / name
    else:
        raise FileNotFoundError(f"{describe(url)} is neither an exported model (model.safetensors) nor a run, "
                                "checkpoints or step folder (with a 'latest' pointer)")
    if tag is None:
        tag = fs.cat_file(f"{checkpoints}/latest").decode().strip()
        if not TAG.fullmatch(tag):
            raise StorageError(f"{describe(checkpoints)}/latest: {tag[:40]!r} is not a checkpoint tag")
        get(f"{checkpoints}/latest", local / "checkpoints" / "latest")
    for name in ("config.yaml", "model.yaml", "spm.model"):
        if exists(f"{run}/{name}"):
            get(f"{run}/{name}", local / name)
    for remote in fs.ls(f"{checkpoints}/{tag}", detail=False):
        get(remote, local / "checkpoints" / tag / remote.rstrip("/").rsplit("/", 1)[-1])
    return target
