"""Bad input through `dist-train`, one case per row: each ends with the exit code and the one-line
message the row names, no `Traceback`, and nothing created (no output folder, no marker file).

The classes each have their own test module (tests/data/test_pack_*.py, tests/test_config_errors.py,
tests/launch/test_sbatch_safety.py, tests/train/test_launcher_errors.py, ...); this one runs a
sample of each through the command's entry point side by side, in-process (`main`), so that a
regression anywhere between argument parsing and the library shows up as a traceback here.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from dist_train.cli import main
from tests.conftest import REPO

TINY = REPO / "configs" / "globetrotter-tiny.yaml"


def _jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 10)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())


def _table(tmp: Path) -> Path:
    for name in ("a.jpg", "b.jpg"):
        _jpeg(tmp / name)
    path = tmp / "t.csv"
    path.write_text("image,caption,language\na.jpg,a green box,en\nb.jpg,eine grüne Kiste,de\n")
    return path


def _pack_table(tmp: Path, *extra: str) -> list[str]:
    return ["-q", "pack", "table", "--table", str(_table(tmp)), "--out", str(tmp / "o"), "--workers", "0", *extra]


def _out_holding(name: str, content: str):
    def setup(tmp: Path) -> list[str]:
        (tmp / "o").mkdir()
        (tmp / "o" / name).write_text(content)
        return _pack_table(tmp)
    return setup


def _coco(content: str):
    def setup(tmp: Path) -> list[str]:
        (tmp / "imgs").mkdir()
        (tmp / "captions_train.json").write_text(content)
        return ["-q", "pack", "coco", "--annotations", str(tmp / "captions_train.json"), "--images",
                str(tmp / "imgs"), "--out", str(tmp / "o"), "--workers", "0"]
    return setup


def _changed_input(tmp: Path) -> list[str]:
    args = _pack_table(tmp)
    assert main(args) == 0
    (tmp / "o" / "summary.json").unlink()
    (tmp / "o" / "_pack" / "done" / "train.json").unlink()  # as if the first run had crashed
    table = tmp / "t.csv"
    table.write_text(table.read_text().replace("a green box", "a green cube"))
    return args


def _config(content: bytes | str, name: str = "bad.yaml"):
    def setup(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["train", "--config", str(path), f"out_dir={tmp / 'run'}", f"data.shards={tmp / 'shards/world-tiny'}"]
    return setup


def _train(*overrides: str):
    def setup(tmp: Path) -> list[str]:
        return ["train", "--config", str(TINY), f"out_dir={tmp / 'run'}", f"data.shards={tmp / 'shards/world-tiny'}",
                *overrides]
    return setup


def _preprocess(*extra: str, config: str | None = None):
    def setup(tmp: Path) -> list[str]:
        (tmp / "in").mkdir()
        args = ["-q", "preprocess", "--in", str(tmp / "in"), "--out", str(tmp / "out"), *extra]
        if config is not None:
            (tmp / "p.yaml").write_text(config)
            args += ["--config", str(tmp / "p.yaml")]
        return args
    return setup


def _pointer(command: str, target: str = "../../elsewhere"):
    def setup(tmp: Path) -> list[str]:
        (tmp / "run" / "checkpoints").mkdir(parents=True)
        (tmp / "run" / "checkpoints" / "latest").write_text(target)
        if command == "export":
            return ["export", str(tmp / "run" / "checkpoints"), str(tmp / "e")]
        (tmp / "ds").mkdir()
        return ["eval", "--checkpoint", str(tmp / "run" / "checkpoints"), "--shards", str(tmp / "ds"),
                "--out", str(tmp / "ev")]
    return setup


def _launch(*args: str):
    def setup(tmp: Path) -> list[str]:
        return ["launch", "--dry-run", "--config", str(TINY), "--job-dir", str(tmp / "jobs"), *args,
                f"out_dir={tmp / 'run'}"]
    return setup


def _sweep_file(tmp: Path) -> list[str]:
    (tmp / "sweep.yaml").write_text('- {out_dir: "x\\ny"}\n- {optim.lr: 0.001}\n')
    return _launch("--sweep-file", str(tmp / "sweep.yaml"))(tmp)


def _plain(*args: str):
    def setup(tmp: Path) -> list[str]:
        return [a.replace("TMP", str(tmp)) for a in args]
    return setup


CASES = {
    # packing: options, the output folder, the input files
    "pack --max-side -5": (lambda t: _pack_table(t, "--max-side", "-5"), 2, "--max-side must be a positive number"),
    "pack --max-samples-per-shard 0": (lambda t: _pack_table(t, "--max-samples-per-shard", "0"), 2,
                                       "--max-samples-per-shard must be a positive number"),
    "pack --workers -1": (lambda t: _pack_table(t, "--workers", "-1"), 2, "--workers must be a number of processes"),
    "pack --jpeg-quality 101": (lambda t: _pack_table(t, "--jpeg-quality", "101"), 2, "from 1 to 100, got 101"),
    "pack --max-image-bytes -1": (lambda t: _pack_table(t, "--max-image-bytes", "-1"), 2, "not a size: '-1'"),
    "pack into a preprocessed dataset": (_out_holding("spm.model", ""), 2, "holds a preprocessed dataset"),
    "pack into an unrelated folder": (_out_holding("notes.txt", "mine"), 2, "holds no packer state"),
    "pack into a foreign summary": (_out_holding("summary.json", '{"format": "other/2"}'), 2, "format 'other/2'"),
    "coco annotations not a list": (_coco('{"images": [], "annotations": {"id": 1}}'), 2,
                                    "'annotations' is of type dict, not a list"),
    "coco file not JSON": (_coco("{not json"), 2, "not a JSON file"),
    "parquet that is not one": (_plain("-q", "pack", "table", "--table", "TMP/t.parquet", "--out", "TMP/o"), 2,
                                "cannot read it as parquet"),
    "input changed before the rerun": (_changed_input, 2, "changed: size"),
    # configs
    "config with a python tag": (_config("seed: !!python/object/apply:os.system ['touch MARKER']\n"), 2,
                                 "python/object/apply"),
    "empty config": (_config(""), 2, "is empty"),
    "config that is a directory": (_plain("train", "--config", "TMP", "out_dir=TMP/run"), 2, "is a directory"),
    "config not UTF-8": (_config(b"data:\n  split: \xff\n"), 2, "is not UTF-8"),
    "config not a mapping": (_config("- a\n- b\n"), 2, "must hold a mapping"),
    "config YAML syntax": (_config("data: {split: [\n"), 2, "is not valid YAML"),
    "optim.lr=inf": (_train("optim.lr=inf"), 2, "'optim.lr' = inf: must be a finite number"),
    "objective.temperature=nan": (_train("objective.temperature=nan"), 2, "must be a finite number"),
    "optim.warmup_steps=-10": (_train("optim.warmup_steps=-10"), 2, "'optim.warmup_steps' = -10"),
    "data.image_size=0": (_train("data.image_size=0"), 2, "'data.image_size' = 0"),
    "model_config.hidden=30": (_train("model_config.hidden=30"), 2, "'model_config.hidden' = 30"),
    "unknown config key": (_train("optim.lrr=0.1"), 2, "optim.lrr"),
    "train --nproc-per-node 0": (_train(), 2, "--nproc-per-node 0: must be at least 1"),
    "preprocess features.batch_size=0": (_preprocess("features.batch_size=0"), 2, "'features.batch_size' = 0"),
    "preprocess bad YAML": (_preprocess(config="vocab: {size: [\n"), 2, "not valid YAML"),
    "preprocess of an empty folder": (_preprocess(), 2, "holds no finished shards"),
    # checkpoints, export, eval, shards
    "export with latest out of the run": (_pointer("export"), 2, "is not a checkpoint tag"),
    "export with latest naming no folder": (_pointer("export", "step00000099"), 2, "is not there"),
    "eval on a folder without the split": (_pointer("eval", "step00000001"), 2, "no finished shards for split 'test'"),
    "eval --batch-size 0": (_plain("eval", "--checkpoint", "TMP", "--shards", "TMP", "--out", "TMP/ev",
                                   "--batch-size", "0"), 2, "--batch-size 0: must be a positive number"),
    "shards stats of nothing": (_plain("shards", "stats", "TMP/none"), 1, "no shards under"),
    "shards inspect of nothing": (_plain("shards", "inspect", "TMP/none"), 1, "no shards under TMP/none"),
    "--storage-options not JSON": (_plain("--storage-options", "{x", "shards", "stats", "TMP"), 2,
                                   "--storage-options: not a JSON object"),
    "a pipe: command as a dataset": (_plain("shards", "stats", "pipe:cat x.tar"), 2, "a pipe: command streams one shard"),
    # launching
    "launch --job-name with a newline": (_launch("--job-name", "x\necho pwned > MARKER"), 2,
                                         "control character '\\n' not allowed"),
    "launch --nodes 0": (_launch("--nodes", "0"), 2, "--nodes 0: must be at least 1"),
    "launch --mem banana": (_launch("--mem", "banana"), 2, "--mem 'banana'"),
    "launch --time 1-99:99:99": (_launch("--time", "1-99:99:99"), 2, "hours must be below 24"),
    "launch --sbatch nodes=3": (_launch("--sbatch", "nodes=3"), 2, "the launcher sets --nodes itself"),
    "launch --qos with a backslash": (_launch("--qos", "a\\b"), 2, "a backslash is not allowed"),
    "launch sweep value with a newline": (_sweep_file, 2, "control character"),
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_line_with_nothing_created(case, tmp_path, capfd, monkeypatch):
    setup, code, fragment = CASES[case]
    fragment = fragment.replace("TMP", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # anything written relative to the current folder would show up below
    if case == "parquet that is not one":
        (tmp_path / "t.parquet").write_bytes(b"PAR1 but not really a parquet file")
    argv = setup(tmp_path)
    if case == "train --nproc-per-node 0":
        argv = [argv[0], "--nproc-per-node", "0", *argv[1:]]
    capfd.readouterr()
    before = _files(tmp_path)
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's own errors
        got = e.code
    out, err = capfd.readouterr()
    assert got == code, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and fragment in lines[-1], err
    if code == 2 and not lines[-1].startswith("usage:"):
        assert lines[-1].startswith("dist-train"), err
    assert _files(tmp_path) == before, "the command created files"


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({fragment for _, _, fragment in CASES.values()}) == len(CASES)


def test_a_store_that_cannot_be_reached_ends_in_one_line(tmp_path):
    """A URL whose endpoint refuses the connection (or whose credentials are refused) is bad set-up, not a
    bug: one line with the storage library's own error, exit 2. Run as a subprocess: the filesystem
    instances of this process may already point at the test server."""
    import os

    from tests.conftest import run_cli

    pytest.importorskip("s3fs")
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_MAX_ATTEMPTS": "1"}
    for args in (["shards", "stats", "s3://nobucket/x"], ["pack", "world", "--preset", "tiny", "--out", "s3://nobucket/x"]):
        proc = run_cli("-q", *args, check=False, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"dist-train {args[0]}: error: EndpointConnectionError: Could not connect"), line
    assert list(tmp_path.iterdir()) == []
