"""Single-node runs listen on 127.0.0.1 only.

torch's TCPStore server binds `::` (every interface) whatever host name it is given, so a store
whose host is a loopback address is handed a socket already bound to 127.0.0.1 (TCPStore's
`master_listen_fd`); gloo and NCCL pick the interface of the host's name unless told otherwise,
so single-node runs tell them `lo`.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOOPBACK = "127.0.0.1"
SOCKET_IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, ::ffff:127.x and `localhost`: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def loopback_listener(port: int) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:`port` (0: a free port) and listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    return sock


def keep_sockets_on_loopback(environ=os.environ) -> None:
    """gloo's and NCCL's sockets on `lo`, unless the user chose an interface."""
    for name in SOCKET_IFNAME_VARS:
        if not environ.get(name):
            environ[name] = "lo"


def tcp_store(host: str, port: int, **kwargs):
    """torch.distributed.TCPStore(host, port, **kwargs); a server for a loopback host listens on 127.0.0.1 only."""
    return loopback_tcp_store_class()(host, port, **kwargs)


def loopback_tcp_store_class():
    """TCPStore, except that a server (is_master) for a loopback host serves on a 127.0.0.1 socket."""
    import torch.distributed as dist

    base = getattr(dist.TCPStore, "_dist_train_base", dist.TCPStore)
    cached = getattr(base, "_dist_train_loopback", None)
    if cached is not None:
        return cached

    class LoopbackTCPStore(base):
        _dist_train_base = base

        def __init__(self, host_name, port, *args, **kwargs):
            names = ("world_size", "is_master", "timeout", "wait_for_workers", "multi_tenant", "master_listen_fd",
                     "use_libuv")
            given = {**dict(zip(names, args)), **kwargs}
            if not (given.get("is_master") and given.get("master_listen_fd") is None and is_loopback(str(host_name))):
                super().__init__(host_name, port, **given)
                return
            listener = loopback_listener(int(port))
            port = listener.getsockname()[1]
            fd = listener.detach()  # the store's server owns the socket from here on, and closes it
            try:
                super().__init__(host_name, port, **{**given, "master_listen_fd": fd})
            except BaseException:
                os.close(fd)
                raise

    base._dist_train_loopback = LoopbackTCPStore
    return LoopbackTCPStore


def install_loopback_stores() -> None:
    """Every TCPStore torch creates in this process from now on serves on 127.0.0.1 when its host is loopback.

    torchrun's agent creates its stores through `torch.distributed.TCPStore` (the store it shares with
    the workers) and through the name its c10d rendezvous backend imported (the rendezvous store).
    """
    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

    store = loopback_tcp_store_class()
    dist.TCPStore = store
    c10d_rendezvous_backend.TCPStore = store
