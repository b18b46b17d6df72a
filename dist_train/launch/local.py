"""`dist-train train --nproc-per-node N`: torchrun in this process, on loopback only, failing in one line.

`cmd_train` execs `python -m dist_train.launch.local ARGS...`, where ARGS are torchrun's own
(everything after the module name). Running torch.distributed.run's `run()` here rather than its
`main()` lets us do three things torchrun does not:

- a single-node run rendezvouses on 127.0.0.1 and every TCP store the agent hosts (the rendezvous
  store and the store the workers share) listens on 127.0.0.1, not on all interfaces: TCPStore's
  server binds `::` whatever host it is given, so the agent's stores get a socket already bound
  to loopback (TCPStore's `master_listen_fd`);
- gloo's and NCCL's sockets stay on `lo` (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME, unless set);
- a worker that exits non-zero after printing its own one-line error ends the run with one more
  line and the worker's exit code, instead of the elastic agent's ChildFailedError traceback.

The process is still the one the shell (or SLURM) signals: SIGTERM/SIGINT reach torchrun's agent,
which stops the workers, as under plain torchrun.
"""

from __future__ import annotations

import sys
import uuid

from dist_train.distributed.loopback import LOOPBACK, install_loopback_stores, keep_sockets_on_loopback

PROG = "dist-train train"


def single_node_args(argv: list[str]) -> list[str]:
    """torchrun's arguments for one node with the rendezvous on 127.0.0.1 (what --standalone means, on loopback).

    --standalone rendezvouses on `localhost:0` (which may resolve to ::1 or to the host's name) and
    names this node by its FQDN, which becomes the workers' MASTER_ADDR; both become 127.0.0.1.
    """
    out = [a for a in argv if a != "--standalone"]
    if len(out) == len(argv):
        return argv
    return ["--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={LOOPBACK}:0", f"--rdzv-id={uuid.uuid4()}",
            f"--local-addr={LOOPBACK}", *out]


def _quiet_agent_logs() -> None:
    """torchrun's INFO lines and its per-failure ERROR report repeat what the workers printed."""
    import logging

    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name.endswith("elastic") else logging.WARNING)


def first_cause(exc) -> tuple[int, object]:
    """The rank that failed first of its own accord: not one that only saw a peer go (PEER_GONE), nor one
    the agent killed while stopping the rest (a negative exit code), unless every rank is such a one."""
    from dist_train.launch.worker import PEER_GONE

    causes = {rank: f for rank, f in exc.failures.items() if f.exitcode != PEER_GONE and f.exitcode >= 0}
    if not causes:
        return exc.get_first_failure()
    rank = min(causes, key=lambda r: (causes[r].timestamp, r))
    return rank, causes[rank]


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with `argv`; the first failed worker's exit code (one line on stderr), or 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    single = "--standalone" in argv
    if single:
        argv = single_node_args(argv)
        keep_sockets_on_loopback()
        install_loopback_stores()
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _quiet_agent_logs()
    try:
        run(parse_args(argv))
    except SignalException as exc:  # SIGTERM/SIGINT to the agent: it has stopped the workers
        print(f"{PROG}: stopped by {exc.sigval.name}; rerun the same command to resume", file=sys.stderr)
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, failure = first_cause(exc)
        code = failure.exitcode
        if code < 0:  # killed by a signal: the shell's convention
            print(f"{PROG}: error: rank {rank} was killed by signal {-code}", file=sys.stderr)
            return 128 - code
        print(f"{PROG}: error: rank {rank} exited with code {code} (its message is above)", file=sys.stderr)
        return code or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
