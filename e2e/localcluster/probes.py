"""Container probes as the kubelet runs them: httpGet, tcpSocket and exec checks on a
period, with initial delay, timeout and success/failure thresholds."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

Obj = dict[str, Any]


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"unknown port {value!r}")


async def check(probe: Obj, container: Obj, pod_ip: str, env: dict[str, str], cwd: Path
                ) -> bool:
    """One probe attempt: True on success."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            scheme = str(spec.get("scheme", "HTTP")).lower()
            host = spec.get("host") or pod_ip
            url = f"{scheme}://{host}:{_port(spec.get('port'), container)}{spec.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            client_timeout = aiohttp.ClientTimeout(total=timeout)
            async with aiohttp.ClientSession(timeout=client_timeout) as session, \
                    session.get(url, headers=headers, ssl=False) as response:
                return 200 <= response.status < 400
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = spec.get("host") or pod_ip
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, _port(spec.get("port"), container)), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if "exec" in probe:
            proc = subprocess.Popen(list(probe["exec"].get("command") or []), env=env, cwd=cwd,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                return False
            return proc.returncode == 0
    except (OSError, ValueError, TimeoutError, aiohttp.ClientError):
        return False
    return True  # grpc and unknown handlers are not emulated: treated as passing
