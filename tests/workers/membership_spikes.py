"""The processes of the membership spikes (tests/workers/test_membership_spikes.py).

Each function runs in its own spawned process and reports what it saw on a queue as
``(name, event, value)`` tuples; the test drives the order with events. Two building blocks
of an in-place resize are proved here, outside the worker code:

* `rpc_member`: torch.distributed.rpc with ``world_size=None`` (a dynamic group): members
  join one by one, call each other, and one leaves while the others go on;
* `gloo_member`: a gloo process group is destroyed and formed again in the same process,
  with other ranks and another world size, over a fresh `PrefixStore` of one shared TCP
  store per membership; a newcomer receives a tensor broadcast from rank 0.
"""

from __future__ import annotations

import time
from datetime import timedelta
from multiprocessing.synchronize import Event
from queue import Queue
from typing import Any

TIMEOUT = timedelta(seconds=30)


def _add(a: int, b: int) -> int:
    return a + b


def _names() -> list[str]:
    import torch.distributed.rpc as rpc

    return sorted(info.name for info in rpc._get_current_rpc_agent().get_worker_infos())


def rpc_member(name: str, rank: int, port: int, report: Queue[Any],
               go: dict[str, Event]) -> None:
    """Join the dynamic RPC group as (`name`, `rank`), then follow the test's script."""
    import torch
    import torch.distributed.rpc as rpc

    torch.set_num_threads(1)
    options = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}",
                                              rpc_timeout=30)
    go[f"{name}_join"].wait(timeout=60)  # torch is loaded in parallel, members join in turn
    started = time.monotonic()
    rpc.init_rpc(name, rank=rank, world_size=None, rpc_backend_options=options)
    report.put((name, "joined_s", time.monotonic() - started))
    report.put((name, "members_at_join", _names()))
    if name == "c":  # the late joiner calls both earlier members at once
        report.put((name, "sums", [rpc.rpc_sync(peer, _add, args=(rank, 10))
                                   for peer in ("a", "b")]))
    if name == "a":  # once b has left, a sees it and still reaches c; a leaves last
        go["a_check"].wait(timeout=60)
        report.put((name, "members_after_leave", _names()))
        report.put((name, "sums", [rpc.rpc_sync("c", _add, args=(rank, 10))]))
    go[f"{name}_leave"].wait(timeout=60)
    started = time.monotonic()
    rpc.shutdown(graceful=True)
    report.put((name, "left_s", time.monotonic() - started))


def gloo_member(name: str, port: int, rounds: list[tuple[int, int, int] | None],
                report: Queue[Any]) -> None:
    """For each round ``(membership, rank, world)`` (None: not a member), form the gloo
    group under the prefix ``m<membership>/``, all-reduce ``rank + 1``, receive rank 0's
    broadcast, destroy the group. The store's master is the test process."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, None, False, TIMEOUT)
    for membership, rank, world in [r for r in rounds if r is not None]:
        started = time.monotonic()
        dist.init_process_group("gloo", store=dist.PrefixStore(f"m{membership}/", store),
                                rank=rank, world_size=world, timeout=TIMEOUT)
        formed = time.monotonic() - started
        total = torch.tensor([rank + 1])
        dist.all_reduce(total)
        state = torch.arange(4) * membership if rank == 0 else torch.zeros(4, dtype=torch.long)
        dist.broadcast(state, src=0)
        started = time.monotonic()
        dist.destroy_process_group()
        report.put((name, membership, {"rank": rank, "world": world,
                                       "sum": int(total), "state": state.tolist(),
                                       "formed_s": formed,
                                       "destroyed_s": time.monotonic() - started}))
