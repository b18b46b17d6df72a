import os
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for the in-process pipeline tests (the pipeline reuses a running Ray)."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, log_to_driver=False, include_dashboard=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_preprocessed(tiny_world, tmp_path_factory) -> Path:
    """The tiny benchmark preprocessed once through the real CLI (read-only for tests)."""
    out = tmp_path_factory.mktemp("pre") / "world-tiny"
    run_cli("-q", "preprocess", "--in", tiny_world, "--out", out, "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""})
    return out
