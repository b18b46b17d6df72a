"""`dist-train launch` cannot be made to run anything but the job: a control character in any value that
reaches the sbatch script, the job's command line or its pickled arguments is refused in one line (exit 2,
nothing rendered, nothing made); every other value reaches the script quoted, so that bash running the
script and sbatch reading its #SBATCH lines both see it as one word; out-of-range resources and --sbatch
keys that would change the launcher's own settings are refused. Through the real CLI (`--dry-run` prints
the script submitit would submit); the last test runs a rendered script with bash."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from dist_train.cli import main
from tests.conftest import REPO, run_cli

TINY = REPO / "configs" / "globetrotter-tiny.yaml"


def _launch(capsys, *args: str) -> tuple[int, str, str]:
    """`dist-train launch ARGS` in this process (the same code as the console script), with its output."""
    code = main(["launch", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_refused(code: int, out: str, err: str, option: str, tmp_path: Path) -> None:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, whatever the value held
    assert lines[0].startswith("dist-train launch: error: ") and option in lines[0], err
    assert out == ""  # no script rendered, nothing submitted
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(_kept), list(tmp_path.iterdir())  # no folder made


_kept: list[str] = []


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder: runs/ and submitit/ folders would appear in it."""
    monkeypatch.chdir(tmp_path)
    _kept.clear()
    return tmp_path


def _keep(path: Path) -> Path:
    """A file the test itself put in the working folder."""
    _kept.append(path.name)
    return path


BAD = ["x\necho pwned > MARKER", "x\recho pwned", "a\x00b", "tab\there", "esc\x1b[2J", "del\x7f", "nel\x85x",
       "ls\u2028x"]


@pytest.mark.parametrize("value", BAD, ids=["LF", "CR", "NUL", "TAB", "ESC", "DEL", "NEL", "LSEP"])
@pytest.mark.parametrize("option", ["--job-name", "--partition", "--account", "--qos", "--constraint", "--mem",
                                    "--time", "--job-dir"])
def test_a_control_character_in_an_option_is_refused(capsys, here, option, value):
    code, out, err = _launch(capsys, "--dry-run", option, value, "--config", TINY)
    _assert_refused(code, out, err, option, here)
    assert "\\" in err.splitlines()[0]  # the character is shown escaped, never written raw


@pytest.mark.parametrize("item", ["comment=x\necho pwned", "mail-type=END\r", "x\ny=1", "exclusive\n"])
def test_a_control_character_in_an_sbatch_key_or_value_is_refused(capsys, here, item):
    code, out, err = _launch(capsys, "--dry-run", "--sbatch", item, "--config", TINY)
    _assert_refused(code, out, err, "--sbatch", here)


@pytest.mark.parametrize("override, option", [
    ("out_dir=runs/x\necho pwned", "out_dir"),
    ("optim.lr=1e-3\r", "optim.lr"),
    ("data.shards=a\x1bb", "data.shards"),
])
def test_a_control_character_in_an_override_is_refused(capsys, here, override, option):
    code, out, err = _launch(capsys, "--dry-run", "--config", TINY, override)
    _assert_refused(code, out, err, option, here)


def test_a_control_character_in_the_config_file_is_refused(capsys, here):
    config = _keep(here / "bad.yaml")
    config.write_text(TINY.read_text() + '\nout_dir: "runs/x\\necho pwned"\n')  # YAML's escape: a real newline
    code, out, err = _launch(capsys, "--dry-run", "--config", config)
    _assert_refused(code, out, err, "config key out_dir", here)


def test_a_control_character_in_the_config_path_is_refused(capsys, here):
    config = _keep(here / "a\nb.yaml")
    config.write_text(TINY.read_text())
    code, out, err = _launch(capsys, "--dry-run", "--config", config)
    _assert_refused(code, out, err, "--config", here)


def test_a_control_character_in_a_sweep_value_is_refused(capsys, here):
    code, out, err = _launch(capsys, "--dry-run", "--config", TINY, "--sweep", "optim.lr=1e-3,1e-4\necho")
    _assert_refused(code, out, err, "--sweep", here)
    sweep = _keep(here / "sweep.yaml")
    sweep.write_text('- {out_dir: "x\\ny"}\n- {optim.lr: 0.001}\n')
    code, out, err = _launch(capsys, "--dry-run", "--config", TINY, "--sweep-file", sweep)
    _assert_refused(code, out, err, "--sweep-file", here)


@pytest.mark.parametrize("option", ["--in", "--out"])
def test_a_control_character_in_a_preprocess_path_is_refused(capsys, here, option):
    paths = {"--in": str(here / "packed"), "--out": str(here / "out")}
    paths[option] += "\necho pwned"
    code, out, err = _launch(capsys, "--dry-run", "--target", "preprocess", "--in", paths["--in"],
                             "--out", paths["--out"])
    _assert_refused(code, out, err, option, here)


@pytest.mark.parametrize("args, message", [
    (["--nodes", "0"], "--nodes 0: must be at least 1"),
    (["--gpus-per-node", "-1"], "--gpus-per-node -1: must be 0 or more"),
    (["--cpus-per-task", "-2"], "--cpus-per-task -2: must be at least 1"),
    (["--tasks-per-node", "0"], "--tasks-per-node 0: must be at least 1"),
    (["--max-requeues", "-1"], "--max-requeues -1: must be 0 or more"),
    (["--mem", "banana"], "--mem 'banana'"),
    (["--mem", "12GB"], "--mem '12GB'"),
    (["--mem", "5X"], "--mem '5X'"),
    (["--time", "1-99:99:99"], "--time '1-99:99:99': hours must be below 24"),
    (["--time", "1-12:60"], "--time '1-12:60': minutes and seconds must be below 60"),
    (["--time", "10:61:00"], "--time '10:61:00': minutes and seconds must be below 60"),
    (["--time", "5:60"], "--time '5:60': seconds must be below 60"),
    (["--time", "0"], "--time '0': must be positive"),
    (["--time", "soon"], "--time 'soon'"),
])
def test_out_of_range_resources_are_refused(capsys, here, args, message):
    code, out, err = _launch(capsys, "--dry-run", *args, "--config", TINY)
    _assert_refused(code, out, err, args[0], here)
    assert message in err


@pytest.mark.parametrize("mem, time, minutes", [
    ("500", "90", 90), ("64G", "10:30", 11), ("2t", "48:00:00", 2880), ("1024K", "1-12", 2160),
    ("8M", "1-12:30", 2190), ("0", "2-00:00:01", 2881),
])
def test_sbatch_forms_of_mem_and_time_are_accepted(capsys, here, mem, time, minutes):
    code, out, err = _launch(capsys, "--dry-run", "--mem", mem, "--time", time, "--config", TINY)
    assert code == 0, err
    assert f"#SBATCH --mem={mem}" in out.splitlines() and f"#SBATCH --time={minutes}" in out.splitlines()


@pytest.mark.parametrize("item, message", [
    ("nodes=3", "the launcher sets --nodes itself"),
    ("ntasks=8", "the launcher sets --ntasks itself"),
    ("ntasks-per-node=8", "the launcher sets --ntasks-per-node itself"),
    ("tasks-per-node=8", "the launcher sets --tasks-per-node itself"),
    ("output=/tmp/x", "the launcher sets --output itself"),
    ("out=/tmp/x", "the launcher sets --output itself"),  # sbatch takes unambiguous prefixes
    ("error=/tmp/x", "the launcher sets --error itself"),
    ("wrap=touch MARKER", "the launcher sets --wrap itself"),
    ("array=0-99", "the launcher sets --array itself"),
    ("signal=KILL@1", "the launcher sets --signal itself"),
    ("partition=gpu", "use --partition instead"),
    ("job-name=x", "use --job-name instead"),
    ("mem=1G", "use --mem instead"),
    ("Mail-Type=END", "the key must be an sbatch long option"),
    ("mail_type=END", "the key must be an sbatch long option"),
    ("-N=2", "the key must be an sbatch long option"),
    ("=x", "give KEY=VALUE"),
    ("comment=a\\b", "a backslash is not allowed"),
])
def test_sbatch_keys_that_change_the_launchers_settings_are_refused(capsys, here, item, message):
    code, out, err = _launch(capsys, "--dry-run", f"--sbatch={item}", "--config", TINY)  # = : values may start with -
    _assert_refused(code, out, err, "--sbatch", here)
    assert message in err


def test_the_same_sbatch_key_twice_is_refused(capsys, here):
    code, out, err = _launch(capsys, "--dry-run", "--sbatch", "comment=a", "--sbatch", "comment=b", "--config", TINY)
    _assert_refused(code, out, err, "--sbatch", here)


def test_an_injected_line_is_refused_by_the_real_cli(tmp_path):
    """The console script end to end: exit 2, one line, and the payload never runs."""
    marker = tmp_path / "MARKER"
    result = run_cli("launch", "--dry-run", "--job-name", f"x\necho pwned > {marker}", "--config", TINY,
                     check=False, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"dist-train launch: error: --job-name 'x\\necho pwned > {marker}': control character '\\n' not allowed"]
    assert not marker.exists() and sorted(tmp_path.iterdir()) == []


CRAFTED = "a b;touch {m} $(touch {m}) `touch {m}` '\"#"


def test_crafted_values_are_quoted_and_nothing_in_the_script_runs_them(capsys, here):
    """Shell and sbatch syntax in every text option (and in the job folder, which is in the srun line) comes
    out as one word: sbatch's reading of #SBATCH lines is POSIX quoting (backslashes, which it reads
    differently, are refused above); and bash, running the script with a stand-in srun, runs nothing else."""
    marker = here / "MARKER"
    crafted = CRAFTED.format(m=marker)
    texts = {"job-name": crafted, "partition": crafted, "account": crafted, "qos": crafted, "constraint": crafted,
             "comment": crafted}
    job_dir = here / f"jobs {crafted}"
    code, out, err = _launch(capsys, "--dry-run", "--job-name", crafted, "--partition", crafted, "--account", crafted,
                             "--qos", crafted, "--constraint", crafted, "--sbatch", f"comment={crafted}",
                             "--job-dir", job_dir, "--config", TINY, f"out_dir={here / crafted}")
    assert code == 0, err
    words = {}
    for line in out.splitlines():
        if line.startswith("#SBATCH "):
            (word,) = shlex.split(line[len("#SBATCH "):])  # one word per #SBATCH line
            key, _, value = word.partition("=")
            words[key.lstrip("-")] = value
    assert {k: words[k] for k in texts} == texts
    assert words["output"] == f"{job_dir}/%j_0_log.out"
    # run the script: a stand-in srun writes the arguments it was given, one per line
    bin_dir = _keep(here / "bin")
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$SRUN_ARGS"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    script, srun_args = _keep(here / "job.sh"), here / "srun-args.txt"
    _kept.append(srun_args.name)
    script.write_text(out)
    subprocess.run(["bash", str(script)], check=True, timeout=60, cwd=here,
                   env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_ARGS": str(srun_args)})
    assert not marker.exists(), "the script ran an injected command"
    args = srun_args.read_text().splitlines()
    assert args[-1] == str(job_dir) and args[-2] == "submitit.core._submit"  # the folder arrived as one word
    assert f"{job_dir}/%j_%t_log.out" in args
