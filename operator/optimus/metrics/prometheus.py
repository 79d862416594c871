"""Step 2 of a scheduling round, the I/O half: `PrometheusClient`, the queries the operator
asks, and `HttpPrometheusClient`, a small client of Prometheus's HTTP API
(`/api/v1/query` and `/api/v1/query_range`) with a timeout per request and a bounded
retry with exponential backoff. Every failure (network, HTTP status, Prometheus's own
error, malformed reply) becomes one `PrometheusError`, so the round can say "metrics
unavailable" and keep the current allocations.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp


class PrometheusError(RuntimeError):
    """Prometheus could not answer (unreachable, timeout, error reply, bad data)."""


@dataclass(frozen=True)
class Series:
    """One time series of a query's result: its labels and (timestamp, value) points
    (one point for an instant query)."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]

    @property
    def last(self) -> float:
        return self.points[-1][1]


def _points(raw: Any) -> tuple[tuple[float, float], ...]:
    points = []
    for t, v in raw:
        value = float(v)
        if math.isfinite(value):
            points.append((float(t), value))
    return tuple(points)


def parse_result(payload: Mapping[str, Any]) -> list[Series]:
    """Series from an API reply ({"status": "success", "data": {"resultType", "result"}})."""
    if payload.get("status") != "success":
        raise PrometheusError(
            f"Prometheus answered {payload.get('errorType', 'error')}: "
            f"{payload.get('error', payload)}"
        )
    data = payload.get("data") or {}
    kind = data.get("resultType")
    try:
        if kind == "vector":
            return [Series(dict(r["metric"]), _points([r["value"]])) for r in data["result"]]
        if kind == "matrix":
            return [Series(dict(r["metric"]), _points(r["values"])) for r in data["result"]]
        if kind == "scalar":
            return [Series({}, _points([data["result"]]))]
    except (KeyError, TypeError, ValueError) as error:
        raise PrometheusError(f"malformed Prometheus reply: {error!r}") from error
    raise PrometheusError(f"unexpected Prometheus result type {kind!r}")


class PrometheusClient(Protocol):
    """Prometheus as the operator asks it (the controller's tests answer from scripted
    series instead). Every failure raises PrometheusError."""

    async def query(self, expr: str, *, time: float | None = None) -> list[Series]:
        """An instant query."""
        ...

    async def query_range(self, expr: str, *, start: float, end: float,
                          step: float) -> list[Series]:
        """A range query over [start, end] at `step` seconds."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


class HttpPrometheusClient:
    """`PrometheusClient` over HTTP: queries one Prometheus server. `retries` extra
    attempts follow a failure, after `backoff`, 2*`backoff`, ... seconds; each attempt is
    bounded by `timeout` seconds."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.25,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._on_failure = on_failure
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpPrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def _get(self, path: str, params: Mapping[str, str]) -> list[Series]:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with self._client().get(f"{self.url}{path}", params=params) as reply:
                    if reply.status >= 500 or reply.status == 429:
                        last = PrometheusError(f"HTTP {reply.status} from {self.url}{path}")
                        continue
                    payload = await reply.json(content_type=None)
                    return parse_result(payload)
            except PrometheusError as error:  # a clear error reply: retrying will not help
                last = error
                break
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                last = error
        if self._on_failure is not None:
            self._on_failure()
        if isinstance(last, PrometheusError):
            raise last
        raise PrometheusError(f"Prometheus at {self.url} is unavailable: {last!r}") from last

    async def query(self, expr: str, *, time: float | None = None) -> list[Series]:
        params = {"query": expr}
        if time is not None:
            params["time"] = f"{time:.3f}"
        return await self._get("/api/v1/query", params)

    async def query_range(self, expr: str, *, start: float, end: float,
                          step: float) -> list[Series]:
        if end < start or step <= 0:
            raise ValueError(f"query_range needs start <= end and step > 0, got "
                             f"start={start}, end={end}, step={step}")
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step:g}"}
        return await self._get("/api/v1/query_range", params)
