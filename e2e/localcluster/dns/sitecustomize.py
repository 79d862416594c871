"""Cluster DNS for pod processes of the local cluster (loaded via PYTHONPATH by its kubelet).

A pod process cannot use the host's resolver for `*.svc` names and the harness must not
touch /etc/hosts, so this module patches Python's resolver functions: names ending in
`.svc` or `.svc.cluster.local` are answered from the local API server, like CoreDNS does
from EndpointSlices:
  <service>.<namespace>.svc             -> IPs of the ready pods the Service selects
  <hostname>.<subdomain>.<namespace>.svc -> the podIP of the pod with that spec.hostname
                                           and spec.subdomain (a headless Service named
                                           like the subdomain must exist)
A pod's own hostname and FQDN resolve to its podIP, and `socket.gethostname()` /
`socket.getfqdn()` return them, as inside a real pod. Every other name goes to the real
resolver. Only code that resolves through Python's
`socket` module sees these names (C libraries calling libc directly do not): resolve in
Python first. One exception is made at start: a MASTER_ADDR that is a cluster name (the
standard torch.distributed variable, which torch resolves in C++) is replaced by its IP,
waiting up to a minute for that pod to get one, so that a user's unmodified DDP script
finds its rendezvous. The operator never relies on this; on a real cluster CoreDNS answers.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

_API = os.environ.get("LOCALCLUSTER_API_URL", "")
_HOSTNAME = os.environ.get("LOCALCLUSTER_POD_HOSTNAME", "")
_FQDN = os.environ.get("LOCALCLUSTER_POD_FQDN", "")
_POD_IP = os.environ.get("LOCALCLUSTER_POD_IP", "")
_TTL_S = 2.0
_cache: dict[str, tuple[float, list[str]]] = {}
_original_getaddrinfo = socket.getaddrinfo
_original_gethostbyname = socket.gethostbyname
_original_gethostbyname_ex = socket.gethostbyname_ex
_original_gethostname = socket.gethostname
_original_getfqdn = socket.getfqdn


def _get(path: str) -> Any:
    try:
        with urllib.request.urlopen(_API + path, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _ready(pod: dict[str, Any], service: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return False
    if (service.get("spec") or {}).get("publishNotReadyAddresses"):
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _selected(namespace: str, service: dict[str, Any]) -> list[dict[str, Any]]:
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []
    query = urllib.parse.urlencode(
        {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))})
    pods = _get(f"/api/v1/namespaces/{namespace}/pods?{query}") or {}
    return [p for p in pods.get("items") or [] if _ready(p, service)]


def _lookup(name: str) -> list[str] | None:
    """IPs for a cluster name, [] when it does not exist, None when not a cluster name."""
    host = name.rstrip(".").lower()
    if _POD_IP and host in (_HOSTNAME, _FQDN):  # a pod's /etc/hosts maps its own names
        return [_POD_IP]
    for suffix in (".svc.cluster.local", ".svc"):
        if host.endswith(suffix):
            stem = host[: -len(suffix)]
            break
    else:
        return None
    if not _API:
        return None
    cached = _cache.get(host)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    parts = stem.split(".")
    ips: list[str] = []
    if len(parts) == 2:
        service_name, namespace = parts
        service = _get(f"/api/v1/namespaces/{namespace}/services/{service_name}")
        if service is not None:
            ips = [p["status"]["podIP"] for p in _selected(namespace, service)]
    elif len(parts) == 3:
        hostname, subdomain, namespace = parts
        service = _get(f"/api/v1/namespaces/{namespace}/services/{subdomain}")
        if service is not None:
            ips = [p["status"]["podIP"] for p in _selected(namespace, service)
                   if (p.get("spec") or {}).get("hostname") == hostname
                   and (p.get("spec") or {}).get("subdomain") == subdomain]
    if ips:
        _cache[host] = (time.monotonic() + _TTL_S, ips)
    return ips


def _not_found(name: str) -> socket.gaierror:
    return socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {name}")


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                flags: int = 0) -> list[Any]:
    name = host.decode() if isinstance(host, bytes) else host
    ips = _lookup(name) if isinstance(name, str) else None
    if ips is None:
        return _original_getaddrinfo(host, port, family, type, proto, flags)
    if not ips:
        raise _not_found(name)
    results: list[Any] = []
    for ip in ips:
        results.extend(_original_getaddrinfo(ip, port, family, type, proto,
                                             flags | socket.AI_NUMERICHOST))
    return results


def gethostbyname(host: str) -> str:
    ips = _lookup(host)
    if ips is None:
        return _original_gethostbyname(host)
    if not ips:
        raise _not_found(host)
    return ips[0]


def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
    ips = _lookup(host)
    if ips is None:
        return _original_gethostbyname_ex(host)
    if not ips:
        raise _not_found(host)
    return host, [], ips


def gethostname() -> str:
    return _HOSTNAME or _original_gethostname()


def getfqdn(name: str = "") -> str:
    if _HOSTNAME and (not name or name in (_HOSTNAME, _FQDN)):
        return _FQDN or _HOSTNAME
    return _original_getfqdn(name)


socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
socket.gethostname = gethostname
socket.getfqdn = getfqdn
socket.gethostbyname = gethostbyname
socket.gethostbyname_ex = gethostbyname_ex


#: how long a pod process waits at start for its MASTER_ADDR's pod to have an IP
MASTER_ADDR_WAIT_S = 60.0


def _resolve_master_addr() -> None:
    """MASTER_ADDR (a cluster name) as the IP torch's C++ resolver cannot find itself."""
    name = os.environ.get("MASTER_ADDR", "")
    if not name or _lookup(name) is None:
        return
    deadline = time.monotonic() + MASTER_ADDR_WAIT_S
    delay = 0.2
    while True:
        try:
            ips = _lookup(name)
        except (OSError, ValueError):
            ips = []
        if ips:
            os.environ["MASTER_ADDR"] = ips[0]
            return
        if time.monotonic() > deadline:
            return  # torch then says it cannot resolve the name
        time.sleep(delay)
        delay = min(2 * delay, 2.0)


_resolve_master_addr()
