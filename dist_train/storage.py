"""Where datasets live: local folders, or object storage and web URLs through fsspec.

Every path the project reads or writes is made here: `location("shards/x")` is a `pathlib.Path`,
`location("s3://bucket/x")` (or gs://, https://, any fsspec protocol) a `UPath` with the same API
(`/`, `.name`, `.read_bytes()`, `.iterdir()`, `.open()`), so the code that lists shards, reads
manifests and streams tars is the same for both.

Credentials and endpoints come from where each filesystem looks for them (for S3: the AWS
environment variables, `~/.aws`, instance roles; `AWS_ENDPOINT_URL` for an S3-compatible
server) and from fsspec's own configuration (`FSSPEC_S3='{"endpoint_url": ...}'`, or files in
`~/.config/fsspec/`). `set_storage_options` (the `--storage-options` option) adds to fsspec's
configuration and exports it to the processes this one starts (loader workers, torchrun's workers,
Ray's tasks). Nothing here logs a storage option.

Writing to object storage keeps the on-disk guarantees: an object becomes visible only when its
upload completes (S3 PUT and multipart uploads are all-or-nothing), so a shard is written under
its final key and its manifest, written after it, still marks it finished.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
PIPE = "pipe:"


class StorageError(ValueError):
    """A URL or storage setting that cannot be used (one line, naming it)."""


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs other than file:// (s3://, gs://, https://, memory://, ...)."""
    text = os.fspath(path) if not isinstance(path, str) else path
    return bool(_URL.match(text)) and not text.startswith("file://")


def is_remote(path: Any) -> bool:
    """True for a location made from a URL (a UPath), False for a local `Path`."""
    return not isinstance(path, Path)


def location(path: str | os.PathLike | Any) -> Path:
    """A local `Path`, or a `UPath` for a URL (typed as Path: it has the same API); `file://x` is the
    local path x. A UPath given is returned as it is."""
    if not isinstance(path, (str, os.PathLike)):
        return path  # already a UPath
    path = os.fspath(path)
    if path.startswith(PIPE):
        raise StorageError(f"{path!r}: a pipe: command streams one shard; give the dataset folder (a path or URL) "
                           "here, or pipe: commands as shard URLs")
    if path.startswith("file://"):
        return Path(path[len("file://"):])
    if not is_url(path):
        return Path(path)
    from upath import UPath

    protocol = path.split("://", 1)[0].lower()
    try:
        return UPath(path)
    except (ImportError, ValueError) as e:
        raise StorageError(f"{describe(path)}: no filesystem for {protocol}:// ({_first_line(e)}); "
                           "install its fsspec package (s3fs for s3://, gcsfs for gs://)") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def set_storage_options(options: str | dict | None) -> None:
    """Add filesystem options, `{protocol: {key: value}}` as a mapping or JSON text, to fsspec's
    configuration, here and in every process started from here."""
    if not options:
        return
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError as e:
            raise StorageError(f"--storage-options: not a JSON object ({e.msg} at character {e.pos})") from None
    if not isinstance(options, dict):
        raise StorageError("--storage-options: give a JSON object, e.g. '{\"s3\": {\"endpoint_url\": \"http://...\"}}'")
    import fsspec.config

    for proto, values in options.items():
        if not isinstance(values, dict):
            raise StorageError(f"--storage-options: the value of {proto!r} must be an object of that filesystem's "
                               "options, e.g. {\"s3\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}")
        proto = proto.lower()
        fsspec.config.conf.setdefault(proto, {}).update(values)
        env = f"FSSPEC_{proto.upper()}"
        merged = {**json.loads(os.environ.get(env, "{}") or "{}"), **values}
        os.environ[env] = json.dumps(merged)


# the packages whose exceptions say a store could not be reached or used (no endpoint, no credentials,
# access denied): bad input or set-up for the command line, not a bug
_STORAGE_MODULES = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google.", "aiohttp", "fsspec", "upath")


def quiet_storage_loggers(verbose: bool = False) -> None:
    """The storage libraries log every credential lookup and endpoint at INFO ('Found credentials in
    environment variables'): kept to warnings unless -v."""
    if not verbose:
        for name in ("botocore", "aiobotocore", "s3fs", "gcsfs", "fsspec", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def storage_failure(exc: BaseException) -> bool:
    """An error of reaching or using a store (or any OS-level I/O error), as opposed to a bug."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(_STORAGE_MODULES)


def describe(path: Any) -> str:
    """A path or URL for messages, without credentials (a URL's user:password@ part is dropped)."""
    return re.sub(r"://[^/@]*@", "://", str(path))


class AtomicFile:
    """A binary file that appears at `path` only on `commit()`: locally a temporary file beside it,
    fsynced and renamed; in object storage an upload that completes on commit (`abort()` discards it,
    so nothing appears)."""

    TMP_MARK = ".tmp-"

    def __init__(self, path: Path):
        self.path = path
        if is_remote(path):
            self._tmp = None
            self._file = path.fs.open(path.path, "wb")
        else:
            self._tmp = Path(path).with_name(f"{Path(path).name}{self.TMP_MARK}{os.getpid()}")
            self._file = open(self._tmp, "wb")

    def write(self, data) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def commit(self) -> None:
        if self._tmp is None:
            self._file.close()  # completes the upload
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        fsync_dir(Path(self.path).parent)

    def abort(self) -> None:
        try:
            if self._tmp is None:
                discard = getattr(self._file, "discard", None)
                if discard is not None:
                    discard()  # an unfinished (multipart) upload is aborted
                    self._file.closed = True  # and must not be completed when the object is collected
                else:
                    self._file.close()
                    self.path.unlink(missing_ok=True)
            else:
                self._file.close()
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that it appears complete or not at all."""
    f = AtomicFile(path)
    try:
        f.write(data)
    except BaseException:
        f.abort()
        raise
    f.commit()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def makedirs(path: Path) -> None:
    """Create a folder (object stores have none: nothing to do there)."""
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)


def listdir(path: Path) -> list[Path]:
    """The entries of a folder, [] when it does not exist."""
    try:
        if not path.is_dir():
            return []
        return list(path.iterdir())
    except FileNotFoundError:
        return []



def upload_folder(local: Path, url: str) -> None:
    """Copy every file under the local folder `local` to `url/<its relative path>` (one PUT each)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    for f in sorted(Path(local).rglob("*")):
        if f.is_file():
            fs.put_file(str(f), f"{root}/{f.relative_to(local).as_posix()}")


class staged_folder:
    """`with staged_folder(out) as local:` a local folder for a command's outputs: `out` itself when it is
    local, else a temporary folder uploaded to the URL `out` when the block succeeds (nothing is uploaded
    when it fails)."""

    def __init__(self, out: str | os.PathLike | Any):
        self.out = str(out)
        self._tmp = None

    def __enter__(self) -> Path:
        if not is_url(self.out):
            return location(self.out)
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="dist-train-out-")
        return Path(self._tmp.name)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._tmp is None:
            return
        try:
            if exc_type is None:
                upload_folder(Path(self._tmp.name), self.out)
        finally:
            self._tmp.cleanup()
