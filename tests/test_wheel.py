"""The package as users install it: a wheel (not the source tree), used from a directory that is not
the repository. The configs ship inside it and are found by name; the whole chain pack -> preprocess
-> train -> export -> eval runs from a temporary directory."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this tree; its other dependencies are this environment's
    (a path entry, not an install: the editable dist_train of this environment stays out of it)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(root / "dist"), str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = (root / "dist").glob("dist_train-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "dependencies.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=600)
    return venv


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["RAY_ADDRESS"] = ""
    proc = subprocess.run([str(venv / "bin" / "dist-train"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_installed_wheel_runs_the_pipeline_from_any_directory(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import dist_train; print(dist_train.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert str(installed) in where, where  # the wheel's copy, not the source tree
    _run(installed, tmp_path, "-q", "pack", "world", "--preset", "tiny", "--out", "packed", "--workers", "0")
    _run(installed, tmp_path, "-q", "preprocess", "--in", "packed", "--out", "ready",
         "--config", "preprocess/default", "ray.object_store_memory=300000000")
    _run(installed, tmp_path, "-q", "train", "--config", "globetrotter-tiny", "out_dir=run", "data.shards=ready",
         "model_config.hidden=32", "model_config.layers=1", "model_config.heads=2", "model_config.intermediate=64",
         "model_config.embed_dim=32", "data.image_size=32", "data.batch_size=8", "max_steps=2", "epochs=null",
         "optim.warmup_steps=1", "eval.batch_size=64", "log.projector_sentences=10")
    _run(installed, tmp_path, "export", "run/checkpoints", "export")
    assert {p.name for p in (tmp_path / "export").iterdir()} >= {"model.safetensors", "config.yaml", "spm.model"}
    _run(installed, tmp_path, "eval", "--checkpoint", "export", "--shards", "ready", "--out", "eval",
         "--no-word-translation")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["sentence_translation"]["num_queries"] == 336
