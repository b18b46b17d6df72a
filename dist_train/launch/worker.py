"""One process of `dist-train train --nproc-per-node N`: dist_train.train.main, quiet when a peer has gone.

When one rank stops on bad input (its own one-line error, exit 2), the others are in, or soon reach, a
collective with it and gloo raises "Connection closed by peer": their tracebacks say nothing the failed
rank did not say. Such a rank prints one line and exits with PEER_GONE, which the launcher
(dist_train.launch.local) passes over when it names the rank that failed first.
"""

from __future__ import annotations

import os
import sys

PEER_GONE = 75  # an exit code no dist-train error uses: "stopped because another rank ended"
# What gloo's TCP transport (and the store's socket) raise when the process on the other end has exited.
_PEER_GONE_MESSAGES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def peer_gone(exc: BaseException) -> bool:
    """A failed collective or store call whose other end has gone away, not a fault of this rank."""
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _PEER_GONE_MESSAGES)


def main(argv: list[str] | None = None) -> int:
    from dist_train.train.main import main as train_main

    try:
        return train_main(argv)
    except Exception as exc:
        if not peer_gone(exc) or int(os.environ.get("WORLD_SIZE", "1")) < 2:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"dist-train train: rank {os.environ.get('RANK', '?')} stopped: another rank ended ({first[:200]})",
              file=sys.stderr)
        return PEER_GONE


if __name__ == "__main__":
    sys.exit(main())
