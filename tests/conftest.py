import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Quiet, bounded Ray for tests (also inherited by the CLI subprocesses): no auth token under ~/.ray,
# no usage reporting, and a pipeline that stops making progress fails instead of waiting 30 minutes.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S", "180")


def run_cli(*args, check=True, **kw) -> subprocess.CompletedProcess:
    """Run the real `dist-train` console script."""
    exe = Path(sys.executable).with_name("dist-train")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "dist_train.cli"]), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The tiny built-in benchmark packed once per test session (read-only for tests)."""
    out = tmp_path_factory.mktemp("world") / "world-tiny"
    run_cli("-q", "pack", "world", "--preset", "tiny", "--out", out)
    return out


@pytest.fixture(scope="session")
def tiny_preprocessed(tiny_world, tmp_path_factory) -> Path:
    """The tiny benchmark preprocessed once through the real CLI (read-only for tests)."""
    out = tmp_path_factory.mktemp("pre") / "world-tiny"
    run_cli("-q", "preprocess", "--in", tiny_world, "--out", out, "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""})
    return out


@pytest.fixture(scope="session")
def tiny_parallel10(tmp_path_factory) -> Path:
    """SMALR's setting on the tiny benchmark (configs/preprocess/parallel10.yaml): ten languages, every
    image captioned in each, precomputed image features, translated val/test queries (read-only)."""
    root = tmp_path_factory.mktemp("parallel10")
    packed = root / "packed" / "world-tiny-parallel10"
    run_cli("-q", "pack", "world", "--preset", "tiny", "--languages", "en,de,fr,es,it,ru,ar,ja,ko,zh",
            "--out", packed)
    out = root / "world-tiny-parallel10"
    run_cli("-q", "preprocess", "--in", packed, "--out", out, "--config", REPO / "configs/preprocess/parallel10.yaml",
            "features.image_size=32", "features.resize=32", "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""})
    return out


@pytest.fixture(scope="session")
def pivot_tiny_preprocessed(tmp_path_factory) -> Path:
    """The tiny task-2 benchmark (every image captioned independently in en and de) packed and
    preprocessed once through the real CLI (read-only for tests)."""
    root = tmp_path_factory.mktemp("pivot")
    packed = root / "packed" / "world-pivot-tiny"
    run_cli("-q", "pack", "world", "--preset", "pivot-tiny", "--out", packed, "--workers", "0")
    out = root / "world-pivot-tiny"
    run_cli("-q", "preprocess", "--in", packed, "--out", out, "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""})
    return out


@pytest.fixture(scope="session")
def tiny_parallel2(tmp_path_factory) -> Path:
    """English -> German MMT's setting on the tiny benchmark (configs/preprocess/mmt-en-de.yaml): every
    train/val image captioned in en and de (the reference translator's exact translations), test images
    captioned independently in both with each caption's exact translation stored, image features
    (read-only)."""
    root = tmp_path_factory.mktemp("parallel2")
    packed = root / "packed" / "world-tiny-parallel2"
    run_cli("-q", "pack", "world", "--preset", "tiny", "--languages", "en,de", "--out", packed, "--workers", "0")
    out = root / "world-tiny-parallel2"
    run_cli("-q", "preprocess", "--in", packed, "--out", out, "--config", REPO / "configs/preprocess/mmt-en-de.yaml",
            "features.image_size=32", "features.resize=32", "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""})
    return out
