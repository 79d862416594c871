"""Sockets and rendezvous: where a pod listens and how its tasks find each other.

Every server socket of a pod (metrics, control, the rendezvous store, the RPC and gloo
transports) listens on the pod's own address (``OPTIMUS_POD_IP``) when it is given, so
that several pods on one host, each with its own loopback address, can use the same ports.
The rendezvous is a TCP store on the chief worker (``OPTIMUS_RENDEZVOUS``); the other tasks
resolve its name in Python (where a test harness may patch name resolution) and retry,
bounded in time, so tasks may start in any order.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import torch.distributed as dist

from optimus_worker import contract

RENDEZVOUS_TIMEOUT_S = 120.0
_SCHEME = "optimus"
_STORES: dict[str, tuple[dist.Store, int, int]] = {}


#: Ports handed out by `free_port`: below Linux's default ephemeral range (32768-60999), so
#: that no outgoing connection on this host is given the port between the moment it is
#: chosen and the moment its server binds it (seen once under load: EADDRINUSE).
FREE_PORT_RANGE = (20000, 32767)
_FREE_PORT_TRIES = 200


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` a moment ago, for a server that binds it soon after.

    Chosen at random from FREE_PORT_RANGE (two callers rarely pick the same one); if that
    range looks full, the OS picks one from its ephemeral range instead."""
    for _ in range(_FREE_PORT_TRIES):
        port = random.randint(*FREE_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pod_ip() -> str | None:
    return os.environ.get(contract.ENV_POD_IP) or None


def bind_host() -> str:
    """The address server sockets listen on: the pod's own, else every interface."""
    return pod_ip() or "0.0.0.0"


def configure_transports() -> None:
    """Keep TensorPipe's and gloo's (ephemeral-port) listeners on loopback for local pods."""
    address = pod_ip()
    if address is not None and address.startswith("127."):
        os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise contract.ContractError(
            f"{contract.ENV_RENDEZVOUS}={address!r} is not host:port"
        )
    return host.strip("[]"), int(port)


def chief_host(default: str) -> str:
    """The chief's host: OPTIMUS_HOSTS's worker-0 entry when given, else the rendezvous host."""
    for entry in (os.environ.get(contract.ENV_HOSTS) or "").split(","):
        key, sep, host = entry.strip().partition("=")
        if sep and key == "worker-0" and host:
            return host
    return default


def resolve(host: str, deadline: float) -> str:
    """An IPv4 address for `host`, retrying until `deadline` (the chief's pod may be new)."""
    delay = 0.05
    while True:
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
            return str(infos[0][4][0])
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot resolve the rendezvous host {host!r}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def rendezvous_store(address: str, is_chief: bool, timeout_s: float = RENDEZVOUS_TIMEOUT_S
                     ) -> dist.Store:
    """The job's TCP store: served by the chief on its own address, reached by the others."""
    host, port = split_host_port(address)
    timeout = timedelta(seconds=timeout_s)
    if is_chief:
        listen_host = pod_ip() or "0.0.0.0"
        sock = _listen(listen_host, port)
        fd = sock.detach()
        connect = pod_ip() or "127.0.0.1"
        return dist.TCPStore(connect, port, None, True, timeout, wait_for_workers=False,
                             master_listen_fd=fd)
    deadline = time.monotonic() + timeout_s
    address_ip = resolve(chief_host(host), deadline)
    while True:
        try:
            return dist.TCPStore(address_ip, port, None, False,
                                 timedelta(seconds=max(1.0, deadline - time.monotonic())))
        except (RuntimeError, dist.DistStoreError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no rendezvous at {address_ip}:{port}: {exc}") from None
            time.sleep(0.2)


def _handler(url: str, **_: object) -> Iterator[tuple[dist.Store, int, int]]:
    key = url.split("://", 1)[1].split("?", 1)[0]
    yield _STORES[key]


def rpc_init_method(store: dist.Store, rank: int, world_size: int) -> str:
    """An ``init_method`` URL that hands `store` to torch.distributed.rpc's rendezvous."""
    if not _STORES:  # first use in this process
        dist.register_rendezvous_handler(_SCHEME, _handler)
    key = f"store{len(_STORES)}"
    _STORES[key] = (store, rank, world_size)
    return f"{_SCHEME}://{key}"
