"""Waiting helpers that never swallow a cancellation.

On Python 3.11, `asyncio.wait_for` can lose a cancellation that arrives just as the inner
awaitable completes (fixed in 3.12); the control loops here wake up constantly, so they
wait through `asyncio.wait`, which always lets the cancellation through.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` passes; True when it was set."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


async def next_item(queue: asyncio.Queue[Any], timeout: float) -> tuple[bool, Any]:
    """(True, item) for the next item of `queue`, or (False, None) after `timeout`."""
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait({getter}, timeout=timeout)
    finally:
        if not getter.done():
            getter.cancel()
    if getter in done and not getter.cancelled():
        return True, getter.result()
    return False, None
