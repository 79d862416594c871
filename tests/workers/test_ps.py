"""The PS update rules and PS 0's coordination, in-process (no RPC)."""

from __future__ import annotations

import torch
from optimus_worker.assignment import Block
from optimus_worker.ps import Coordinator, ShardServer


def _server(sync: bool, workers: int) -> ShardServer:
    server = ShardServer(sync, workers, lambda ps: torch.optim.SGD(ps, lr=1.0), None)
    server.load([Block("w", 0, 2), Block("b", 0, 1)], torch.tensor([1.0, 2.0, 3.0]), {},
                {"lr": 1.0})
    return server


def test_sync_applies_the_sum_once_all_workers_pushed() -> None:
    server = _server(sync=True, workers=3)
    futures = [server.push(0, torch.tensor([0.1, 0.2, 0.3])) for _ in range(2)]
    assert not any(f.done() for f in futures)
    futures.append(server.push(0, torch.tensor([0.1, 0.2, 0.3])))
    answers = [f.wait() for f in futures]
    for version, values, staleness in answers:
        assert version == 1 and staleness == 0
        assert torch.allclose(values, torch.tensor([0.7, 1.4, 2.1]))


def test_async_applies_each_push_and_reports_staleness() -> None:
    server = _server(sync=False, workers=2)
    v1, _values1, s1 = server.push(0, torch.ones(3)).wait()
    v2, values2, s2 = server.push(0, torch.ones(3)).wait()  # pulled before the first push
    assert (v1, s1, v2, s2) == (1, 0, 2, 1)
    assert torch.allclose(values2, torch.tensor([-1.0, 0.0, 1.0]))


def test_pull_waits_for_the_chief_to_load() -> None:
    server = ShardServer(True, 1, lambda ps: torch.optim.SGD(ps, lr=1.0), None)
    fut = server.pull()
    assert not fut.done()
    server.load([Block("w", 0, 1)], torch.tensor([5.0]), {}, {"lr": 1.0})
    assert fut.wait()[1].tolist() == [5.0]


def test_pause_protocol() -> None:
    coord = Coordinator(num_workers=2, dataset_size=4)
    start = coord.start()
    coord.load(10, 100, {}, {})
    assert start.wait() == 10
    assert coord.report(11, 0, 1.0, 2)["pause"] is False
    target = coord.request_pause()
    assert target == 12  # the next step nobody pushed yet
    assert coord.request_pause() == 12  # a pending pause serves later requests
    assert coord.report(12, 0, 1.0, 2)["pause"] is True
    other = coord.arrive(1, 12, {0: torch.tensor([1, 0, 0, 1])})
    chief = coord.arrive(0, 12, {0: torch.tensor([0, 1, 1, 0])})
    assert chief.done() and not other.done()
    ledger, losses, info = coord.snapshot()
    assert ledger[0].tolist() == [1, 1, 1, 1]
    assert losses == {0: (2.0, 4)} and info["epoch_loss"] == 0.5
    coord.release(12, finished=False)
    assert other.wait() == {"finished": False, "checkpoint_step": 12}
    assert coord.report(13, 1, 0.0, 2)["pause"] is False


def test_pause_never_beyond_the_last_step() -> None:
    coord = Coordinator(num_workers=1, dataset_size=4)
    coord.load(5, 6, {}, {})
    coord.report(6, 0, 0.0, 4)
    assert coord.request_pause() == 6
