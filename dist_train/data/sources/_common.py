"""Checks and conversions the file-based sources share."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..languages import canonical_language
from ..schema import check_split_name


def text(data: bytes) -> str | bytes:
    """UTF-8 text as str; undecodable bytes are passed on as they are, for the packer to reject."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def existing_file(path: str | Path, option: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option}: no such file: {path}")
    return path


def existing_dir(path: str | Path, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{option}: no such directory: {path}")
    return path


def split_option(split: str, option: str = "--split") -> str:
    try:
        return check_split_name(split)
    except ValueError as e:
        raise ValueError(f"{option}: {e}") from None


def language_option(code: str, option: str = "--language") -> str:
    """A language given on the command line applies to every record: a bad one is a config error."""
    try:
        return canonical_language(code)
    except ValueError as e:
        raise ValueError(f"{option}: {e}") from None


def id_string(value) -> str:
    """Ids as strings; a missing one becomes "" (the packer rejects an empty caption id)."""
    return "" if value is None else str(value)


def type_problem(field: str, value: Any, wanted: str) -> str:
    return f"{field} is of type {type(value).__name__} ({value!r:.40}), not {wanted}"


class Fields:
    """Reads the fields of one input record; the first of a wrong type becomes the record's `defect`,
    so the packer rejects that record with a reason naming the field and its type, and the run goes on."""

    def __init__(self, where: str):
        self.where = where  # "captions.json: annotations[3]"
        self.defect: tuple[str, str] | None = None

    def bad(self, reason: str, detail: str) -> None:
        if self.defect is None:
            self.defect = (reason, f"{self.where}: {detail}")

    def id(self, value: Any, field: str) -> str:
        """A string or integer id as a string; missing: "" (rejected as an empty id by the packer)."""
        if value is None or isinstance(value, str):
            return value or ""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.bad("invalid_id", type_problem(field, value, "a string or an integer"))
        return ""

    def text(self, value: Any, field: str) -> str | bytes | None:
        """A caption: text, or bytes for the packer to decode; anything else is `invalid_caption`."""
        if value is None or isinstance(value, (str, bytes)):
            return value
        self.bad("invalid_caption", type_problem(field, value, "text"))
        return None

    def path(self, value: Any, field: str) -> str | None:
        """An image path; missing or empty: None (`missing_image`), of another type: `missing_image` naming it."""
        if value is None or isinstance(value, str):
            return value or None
        self.bad("missing_image", type_problem(field, value, "a file path"))
        return None

    def language(self, value: Any, field: str) -> str | None:
        if value is None or isinstance(value, str):
            return value or None
        self.bad("unknown_language", type_problem(field, value, "a language tag"))
        return None

    def group(self, value: Any, field: str) -> str | None:
        if isinstance(value, (list, tuple, dict, set)):
            self.bad("invalid_group", type_problem(field, value, "a string or a number"))
            return None
        return group_string(value)


GROUP_BY_CHOICES = ("image",)


def group_string(value) -> str | None:
    """A translation group as a string; a missing or blank one becomes None (no group)."""
    if value is None:
        return None
    value = (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).strip()
    return value or None


def group_by_option(group_by: str | None, option: str = "--group-by") -> str | None:
    if group_by is not None and group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"{option}: {group_by!r} is not one of {', '.join(GROUP_BY_CHOICES)}")
    return group_by


def fingerprint(paths: list[str | Path], content: bool = True) -> dict[str, dict[str, Any]]:
    """Size, mtime and (with `content`) SHA-256 of each input file, by resolved path: stored with a
    pack so that a rerun on changed input is refused (`dist_train.data.pack` compares them)."""
    out: dict[str, dict[str, Any]] = {}
    for p in paths:
        p = Path(p).resolve()
        st = p.stat()
        entry: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if content:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            entry["sha256"] = h.hexdigest()
        out[str(p)] = entry
    return out


def read_input(path: Path) -> bytes:
    """An input file's bytes; failing to read it is a one-line error naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e.strerror or e}") from None
