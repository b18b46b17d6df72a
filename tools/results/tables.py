"""What the results tools share: their command line and the table's place in a Markdown file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def parse_args(doc: str, rows: dict, runs: Path, begin: str, end: str) -> tuple[argparse.Namespace, list[str]]:
    """--rows (checked against `rows`), --runs, --processes, --write; returns the arguments and the rows asked for."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(rows), help="comma-separated subset of: " + ", ".join(rows))
    parser.add_argument("--runs", type=Path, default=runs)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--write", type=Path, help=f"replace the table between {begin} and {end} in this file")
    args = parser.parse_args()
    names = [n for n in args.rows.split(",") if n]
    unknown = [n for n in names if n not in rows]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(rows)}")
    return args, names


def write_between(path: Path, begin: str, end: str, text: str) -> None:
    """Replace what lies between the two marker lines of `path` with `text`."""
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} ... {end} markers")
    head, rest = doc.split(begin, 1)
    path.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def run_tool(doc: str, rows: dict, runs: Path, begin: str, end: str, run_row: Callable[[str, Path, int], dict],
             table: Callable[[dict, Path, int], str], checks: Callable[[dict], list[str]]) -> int:
    """A results tool's main: measure the rows asked for, print the table (rows in `rows`' order) and the
    checks, and with --write put the table in the file."""
    args, names = parse_args(doc, rows, runs, begin, end)
    measured = {name: run_row(name, args.runs, args.processes) for name in names}  # in the order asked for
    results = {name: measured[name] for name in rows if name in measured}
    text = table(results, args.runs, args.processes) + "\n\n" + "\n".join(f"- {c}" for c in checks(results))
    print(text)
    if args.write:
        write_between(args.write, begin, end, text)
    return 0
