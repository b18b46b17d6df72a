"""Checks and conversions the file-based sources share."""

from __future__ import annotations

from pathlib import Path

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
