"""Two gloo processes over slices of a batch == one process over the whole batch.

Each rank computes its share of every loss (local rows x gathered columns); gradients are averaged
over ranks as DDP / DeepSpeed do. Loss and every parameter gradient must equal the single-process
values over the concatenated batch, for equal and unequal splits, and through gradient caching.
"""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed import global_batch_scenarios as scenarios

WORLD = 2
TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("global-batch")
    context = mp.start_processes(
        scenarios.worker,
        args=(WORLD, free_port(), str(out_dir)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"2-process run did not finish in {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    errors = sorted(out_dir.glob("error-*.txt"))
    assert not errors, "\n".join(e.read_text() for e in errors)
    return torch.load(out_dir / "results.pt")


@pytest.fixture(scope="module")
def single_process_results():
    return scenarios.run_scenarios(scenarios.make_batch())


CASES = [*scenarios.SCENARIOS, "grad_cache"]


@pytest.mark.parametrize("split", list(scenarios.SPLITS))
@pytest.mark.parametrize("name", CASES)
def test_two_ranks_match_one_process(distributed_results, single_process_results, split, name):
    got, want = distributed_results[split][name], single_process_results[name]
    assert want["grads"].abs().max() > 1e-6, "scenario produces no gradient: the comparison would be vacuous"
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got["grads"], want["grads"], rtol=1e-9, atol=1e-12)
    for key in set(want) - {"loss", "grads"}:  # logged alpha statistics are global, not per rank
        torch.testing.assert_close(got[key].to(want[key].dtype), want[key])


def test_transitive_scenarios_have_positives(single_process_results):
    """Guard against a vacuous transitive check (alpha all zero would test only the denominator)."""
    for name in ("transitive_paper", "transitive_code", "transitive_supervised"):
        fraction = single_process_results[name]["positive_fraction"]
        assert 0 < fraction < 1, (name, fraction)
