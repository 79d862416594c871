"""Spikes: the building blocks of an in-place resize, in real processes over 127.0.0.1.

(a) torch.distributed.rpc with ``world_size=None``: a dynamic group that members join and
leave while the others keep calling each other; (b) a gloo process group destroyed and
formed again in running processes with other ranks and world sizes, one `PrefixStore` per
membership, a newcomer included. What they showed (timings, limits) is in
docs/design-notes.md ("Resizing in place").
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from datetime import timedelta
from typing import Any

import pytest
import torch.distributed as dist
from optimus_worker.net import free_port

from tests.workers.membership_spikes import gloo_member, rpc_member

pytestmark = pytest.mark.processes
SPAWN = mp.get_context("spawn")
WAIT_S = 60.0


def _drain(report: Any, count: int) -> list[tuple[Any, ...]]:
    got = []
    for _ in range(count):
        try:
            got.append(report.get(timeout=WAIT_S))
        except queue.Empty:
            pytest.fail(f"only {len(got)} of {count} reports arrived: {got}")
    return got


def _join_all(processes: list[Any]) -> None:
    for process in processes:
        process.join(timeout=WAIT_S)
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0] * len(processes)


def test_dynamic_rpc_group_members_join_and_leave() -> None:
    port = free_port()
    report = SPAWN.Queue()
    go = {e: SPAWN.Event() for e in ("a_join", "b_join", "c_join", "a_check", "a_leave",
                                     "b_leave", "c_leave")}
    members = {n: SPAWN.Process(target=rpc_member, args=(n, rank, port, report, go))
               for rank, n in enumerate("abc")}
    try:
        seen: dict[tuple[str, str], Any] = {}
        for process in members.values():
            process.start()
        for name, count in (("a", 2), ("b", 2), ("c", 3)):  # one by one: a hosts the store
            go[f"{name}_join"].set()
            seen.update({(n, e): v for n, e, v in _drain(report, count)})
        assert seen[("a", "members_at_join")] == ["a"]
        assert seen[("b", "members_at_join")] == ["a", "b"]
        assert seen[("c", "members_at_join")] == ["a", "b", "c"]
        assert seen[("c", "sums")] == [12, 12]  # c (rank 2) reached both earlier members
        go["b_leave"].set()
        seen.update({(n, e): v for n, e, v in _drain(report, 1)})
        members["b"].join(timeout=WAIT_S)
        assert members["b"].exitcode == 0 and ("b", "left_s") in seen
        go["a_check"].set()
        seen.update({(n, e): v for n, e, v in _drain(report, 2)})
        assert seen[("a", "members_after_leave")] == ["a", "c"]
        assert seen[("a", "sums")] == [10]
        go["c_leave"].set()  # a hosts the store, so it leaves last
        seen.update({(n, e): v for n, e, v in _drain(report, 1)})
        go["a_leave"].set()
        seen.update({(n, e): v for n, e, v in _drain(report, 1)})
        _join_all(list(members.values()))
    finally:
        for process in members.values():
            if process.is_alive():
                process.kill()
    print({k: round(v, 3) for k, v in seen.items() if k[1].endswith("_s")})


def test_gloo_group_reformed_with_new_ranks_and_a_newcomer() -> None:
    port = free_port()
    master = dist.TCPStore("127.0.0.1", port, None, True, timedelta(seconds=30),
                           wait_for_workers=False)
    # membership 1: a and b; 2: c joins as rank 2; 3: b leaves, c becomes rank 1
    rounds: dict[str, list[tuple[int, int, int] | None]] = {
        "a": [(1, 0, 2), (2, 0, 3), (3, 0, 2)],
        "b": [(1, 1, 2), (2, 1, 3), None],
        "c": [None, (2, 2, 3), (3, 1, 2)],
    }
    report = SPAWN.Queue()
    members = [SPAWN.Process(target=gloo_member, args=(n, port, r, report))
               for n, r in rounds.items()]
    try:
        for process in members:
            process.start()
        seen = {(n, m): v for n, m, v in _drain(report, 7)}
        _join_all(members)
    finally:
        for process in members:
            if process.is_alive():
                process.kill()
    for (name, membership), value in seen.items():
        planned = rounds[name][membership - 1]
        assert planned is not None
        _, rank, world = planned
        assert (value["rank"], value["world"]) == (rank, world)
        assert value["sum"] == world * (world + 1) // 2
        assert value["state"] == [0, membership, 2 * membership, 3 * membership]
    assert set(seen) == {("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 2), ("c", 3)}
    del master
    print({k: (round(v["formed_s"], 3), round(v["destroyed_s"], 3)) for k, v in seen.items()})
