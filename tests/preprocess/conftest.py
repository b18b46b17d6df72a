import pytest



@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for the in-process pipeline tests (the pipeline reuses a running Ray)."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, log_to_driver=False, include_dashboard=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()
