"""A table of local image paths and captions: CSV, TSV or Parquet, one caption per row.

The caption column of a CSV or TSV is read as bytes, so a row with invalid UTF-8 becomes one
rejected record rather than a read error for the whole table; the columns that name ids, paths,
languages, splits and translation groups are read as strings, so an id like "007" keeps its zeros.

Translation groups (which captions translate each other, what sentence-translation evaluation
needs) come from a column (--group-column) or from the images (--group-by image: the captions of
one image, in their distinct languages, translate each other).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ._common import (GROUP_BY_CHOICES, Fields, existing_dir, existing_file, fingerprint, group_by_option,
                      group_string, language_option, split_option, text)
from .base import CliSource, FileImage, SourceRecord

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_OPTIONS = {"image": "--image-column", "caption": "--caption-column", "language": "--language-column",
            "image_id": "--id-column", "caption_id": "--caption-id-column", "split": "--split-column",
            "group": "--group-column"}
_CHUNK_ROWS = 4096


class TableSource(CliSource):
    name = "table"
    cli_name = "table"
    cli_help = "a CSV, TSV or Parquet table of image paths, captions and languages"
    cli_example = "dist-train pack table --table captions.tsv --split-column split --out shards/packed/mytable"

    def __init__(self, table: str | Path, *, format: str | None = None, image_column: str = "image",
                 caption_column: str = "caption", language_column: str = "language", language: str | None = None,
                 id_column: str | None = None, caption_id_column: str | None = None,
                 split_column: str | None = None, split: str = "train", image_root: str | Path | None = None,
                 group_column: str | None = None, group_by: str | None = None):
        """`language` is used for rows without their own (no language column, or an empty cell);
        `split` when there is no `split_column`; `image_root` (default: the table's folder) is what
        relative image paths are relative to. Translation groups: `group_column` names them (rows
        with an empty cell have none), or `group_by="image"` groups the captions of each image id."""
        self.path = existing_file(table, "--table")
        self.format = format or FORMATS.get(self.path.suffix.lower())
        if self.format not in ("csv", "tsv", "parquet"):
            raise ValueError(f"--format: cannot tell the format of {self.path}: pass --format csv, tsv or parquet")
        self.image_root = existing_dir(image_root, "--image-root") if image_root is not None else self.path.parent
        self.language = language_option(language) if language is not None else None
        self.split = split_option(split)
        self.group_by = group_by_option(group_by)
        if group_column and self.group_by:
            raise ValueError("--group-column and --group-by: give one way of declaring translation groups, not both")
        self.columns = {"image": image_column, "caption": caption_column, "language": language_column,
                        "image_id": id_column, "caption_id": caption_id_column, "split": split_column}
        if group_column:  # only when given: the columns are part of `describe()`, which a resumed pack compares
            self.columns["group"] = group_column
        self._fingerprint: dict | None = None
        try:
            self._table = self._read()
        except (pa.ArrowException, OSError) as e:  # not a table of this format: one line naming the file
            message = " ".join(str(e).split())
            raise ValueError(f"{self.path}: cannot read it as {self.format}: {message[:300]}") from None
        if split_column:
            self._counts = self._split_counts(split_column)
        else:
            self._counts = {self.split: self._table.num_rows}

    def _read(self) -> pa.Table:
        wanted = [name for name in self.columns.values() if name]
        if self.format == "parquet":
            names = pq.read_schema(self.path).names
        else:
            types = {name: pa.string() for name in wanted} | {self.columns["caption"]: pa.binary()}
            table = pacsv.read_csv(
                self.path,
                parse_options=pacsv.ParseOptions(delimiter="\t" if self.format == "tsv" else ","),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""]),
            )
            names = table.column_names
        for role, name in self.columns.items():
            if name and name not in names and not (role == "language" and self.language):
                hint = "; name the language column, or pass --language for all rows" if role == "language" else ""
                raise ValueError(f"{_OPTIONS[role]}: {self.path} has no column {name!r} "
                                 f"(its columns: {', '.join(names)}){hint}")
        present = [name for name in dict.fromkeys(wanted) if name in names]
        return pq.read_table(self.path, columns=present) if self.format == "parquet" else table.select(present)

    def _split_counts(self, column: str) -> dict[str, int]:
        """Rows per split, in order of first appearance; a bad split value is a config error."""
        values = self._table[column].to_pylist()
        counts = collections.Counter(values)
        for value in counts:
            try:
                split_option(value, _OPTIONS["split"])
            except ValueError as e:
                raise ValueError(f"{self.path}, row {values.index(value) + 1}: {e}") from None
        return dict(counts)

    def splits(self) -> list[str]:
        return list(self._counts)

    def count(self, split: str) -> int:
        return self._counts.get(split, 0)

    def records(self, split: str) -> Iterator[SourceRecord]:
        if split not in self._counts:
            return
        if self.columns["split"]:
            rows = pc.indices_nonzero(pc.equal(self._table[self.columns["split"]], split))
        else:
            rows = pa.array(range(self._table.num_rows), pa.uint64())
        for start in range(0, len(rows), _CHUNK_ROWS):
            chunk = rows.slice(start, _CHUNK_ROWS)
            columns = self._table.take(chunk).to_pydict()
            for i, row in enumerate(chunk.to_pylist()):
                yield self._record({name: values[i] for name, values in columns.items()}, row + 1, split)

    def _record(self, row: dict[str, Any], number: int, split: str) -> SourceRecord:
        """One row; a cell of the wrong type (a Parquet column of numbers, lists or structs) is the
        row's defect, named by its column."""
        c = self.columns
        fields = Fields(f"{self.path.name}, row {number}")
        path = fields.path(row[c["image"]], f"column {c['image']!r}")
        caption = fields.text(row[c["caption"]], f"column {c['caption']!r}")
        if c["image_id"]:
            image_id = fields.id(row[c["image_id"]], f"column {c['image_id']!r}")
        else:
            image_id = path or ""
        if "group" in c:
            group = fields.group(row[c["group"]], f"column {c['group']!r}")
        else:
            group = group_string(image_id) if self.group_by == "image" else None
        language = fields.language(row.get(c["language"]), f"column {c['language']!r}") if c["language"] in row else None
        if c["caption_id"]:
            caption_id = fields.id(row[c["caption_id"]], f"column {c['caption_id']!r}")
        else:
            caption_id = f"{self.path.stem}-{number}"
        return SourceRecord(
            image=FileImage(str(self.image_root / path)) if path else None,
            caption=text(caption) if isinstance(caption, bytes) else caption,
            language=language or self.language,
            image_id=image_id,
            caption_id=caption_id,
            split=split,
            translation_group=group,
            defect=fields.defect,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "table": str(self.path.resolve()),
            "format": self.format,
            "columns": self.columns,
            "language": self.language,
            "split": None if self.columns["split"] else self.split,
            "image_root": str(self.image_root.resolve()),
            **({"group_by": self.group_by} if self.group_by else {}),
            "input_files": self._input_files(),
        }

    def _input_files(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = fingerprint([self.path])
        return self._fingerprint

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--table", required=True, metavar="FILE", help="the table: .csv, .tsv or .parquet")
        parser.add_argument("--format", choices=("csv", "tsv", "parquet"),
                            help="table format; without it, from the file extension")
        parser.add_argument("--image-column", default="image", metavar="NAME", help="image file paths")
        parser.add_argument("--caption-column", default="caption", metavar="NAME", help="captions")
        parser.add_argument("--language-column", default="language", metavar="NAME",
                            help="language codes (if the table has no such column, --language is used)")
        parser.add_argument("--language", metavar="CODE", help="language of rows without one of their own")
        parser.add_argument("--id-column", metavar="NAME", help="image ids; without it, the image path")
        parser.add_argument("--caption-id-column", metavar="NAME",
                            help="caption ids; without it, <table name>-<row>, rows counted from 1")
        parser.add_argument("--split-column", metavar="NAME", help="split names; without it, every row is in --split")
        parser.add_argument("--split", default="train", metavar="NAME", help="split when there is no --split-column")
        parser.add_argument("--image-root", metavar="DIR",
                            help="folder relative image paths start from; without it, the table's folder")
        groups = parser.add_mutually_exclusive_group()
        groups.add_argument("--group-column", metavar="NAME",
                            help="translation groups: rows with equal values translate each other "
                                 "(what sentence-translation evaluation needs)")
        groups.add_argument("--group-by", choices=GROUP_BY_CHOICES,
                            help="translation groups from the images: the captions of one image (--id-column, "
                                 "else its path) in distinct languages translate each other")

    @classmethod
    def from_args(cls, args) -> "TableSource":
        return cls(args.table, format=args.format, image_column=args.image_column, caption_column=args.caption_column,
                   language_column=args.language_column, language=args.language, id_column=args.id_column,
                   caption_id_column=args.caption_id_column, split_column=args.split_column, split=args.split,
                   image_root=args.image_root, group_column=args.group_column, group_by=args.group_by)
