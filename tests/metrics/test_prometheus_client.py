"""The Prometheus client against a real HTTP server (aiohttp on 127.0.0.1): answers,
retries after server errors, and one PrometheusError for every kind of failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from optimus.metrics.prometheus import HttpPrometheusClient, PrometheusError


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    app.router.add_get("/api/v1/query_range", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def _run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_query_range_passes_parameters_and_parses() -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"status": "success", "data": {"resultType": "matrix",
                                  "result": [{"metric": {"job": "a"},
                                              "values": [[10, "1"], [11, "2"]]}]}})

    async def main() -> Any:
        runner, url = await _serve(handler)
        try:
            async with HttpPrometheusClient(url) as client:
                return await client.query_range("up", start=10, end=11, step=1)
        finally:
            await runner.cleanup()

    (series,) = _run(main())
    assert series.points == ((10.0, 1.0), (11.0, 2.0))
    assert seen[0]["query"] == "up" and seen[0]["step"] == "1"


def test_server_errors_are_retried_then_reported() -> None:
    calls = 0
    failures: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.Response(status=503)
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": []}})

    async def main(retries: int) -> Any:
        runner, url = await _serve(handler)
        try:
            async with HttpPrometheusClient(url, retries=retries, backoff=0.01,
                                        on_failure=lambda: failures.append(1)) as client:
                return await client.query("up")
        finally:
            await runner.cleanup()

    assert _run(main(retries=2)) == []
    calls = 0
    with pytest.raises(PrometheusError, match="503"):
        _run(main(retries=0))
    assert failures == [1]


def test_unreachable_and_slow_servers_raise_prometheus_error() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    async def unreachable() -> None:
        async with HttpPrometheusClient("http://127.0.0.1:9", retries=0, timeout=1) as client:
            await client.query("up")

    async def too_slow() -> None:
        runner, url = await _serve(slow)
        try:
            async with HttpPrometheusClient(url, retries=0, timeout=0.2) as client:
                await client.query("up")
        finally:
            await runner.cleanup()

    with pytest.raises(PrometheusError, match="unavailable"):
        _run(unreachable())
    with pytest.raises(PrometheusError, match="unavailable"):
        _run(too_slow())
