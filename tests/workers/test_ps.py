"""The PS update rules and PS 0's coordination, in-process (no RPC)."""

from __future__ import annotations

import pytest
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
    assert other.wait() == {"finished": False, "checkpoint_step": 12, "reshard": None}
    assert coord.report(13, 1, 0.0, 2)["pause"] is False


def test_pause_never_beyond_the_last_step() -> None:
    coord = Coordinator(num_workers=1, dataset_size=4)
    coord.load(5, 6, {}, {})
    coord.report(6, 0, 0.0, 4)
    assert coord.request_pause() == 6


# ---- a worker change in place ----------------------------------------------------------------
def test_sync_counts_the_new_membership_from_the_switch_step() -> None:
    server = _server(sync=True, workers=2)
    server.switch_workers(1, 3)  # step 0: 2 pushes; from step 1 on: 3
    step0 = [server.push(0, torch.ones(3), step=0) for _ in range(2)]
    assert all(f.done() for f in step0)
    step1 = [server.push(1, torch.ones(3), step=1) for _ in range(2)]
    assert not any(f.done() for f in step1)
    step1.append(server.push(1, torch.ones(3), step=1))
    assert [f.wait()[0] for f in step1] == [2, 2, 2]


def test_an_added_worker_pulls_the_values_once_the_steps_before_it_are_applied() -> None:
    server = _server(sync=True, workers=1)
    early = server.pull_after(1)  # the newcomer starts at step 1
    assert not early.done()
    server.push(0, torch.ones(3), step=0)
    assert early.wait()[0] == 1 and early.wait()[1].tolist() == [0.0, 1.0, 2.0]
    assert server.pull_after(1).done()


def test_async_pulls_the_values_of_the_moment() -> None:
    assert _server(sync=False, workers=1).pull_after(5).done()


def _loaded(workers: int, start: int = 0, final: int = 100) -> Coordinator:
    coord = Coordinator(num_workers=workers, dataset_size=4)
    coord.load(start, final, {}, {})
    return coord


def test_the_switch_takes_effect_at_the_first_step_nobody_pushed() -> None:
    coord = _loaded(2)
    coord.report(5, 0, 0.0, 1)
    assert coord.switch(generation=1, workers=3) == {"at": 6}
    switch = {"at": 6, "workers": 3, "generation": 1}
    assert coord.report(5, 0, 0.0, 1)["switch"] is None  # a slower worker's step before
    assert coord.report(6, 0, 0.0, 1)["switch"] == switch  # every worker learns it at 6


def test_a_switch_past_the_last_step_fails() -> None:
    coord = _loaded(2, final=7)
    coord.report(6, 0, 0.0, 1)
    assert "ends at step 7" in coord.switch(generation=1, workers=3)["error"]


def test_added_workers_start_once_every_old_worker_pushed_the_step_before_the_switch() -> None:
    coord = _loaded(2)
    joiner = coord.join(1)  # announced before the switch is agreed
    coord.report(3, 0, 2.0, 2)
    assert coord.switch(generation=1, workers=3) == {"at": 4}
    coord.report(4, 0, 1.0, 2)
    assert not joiner.done()
    coord.report(4, 0, 1.0, 2)
    assert joiner.wait()["step"] == 4 and joiner.wait()["running_loss"] == pytest.approx(2 / 3)
    assert coord.join(1).wait()["step"] == 4  # a late joiner gets the same answer


def test_a_pause_waits_for_the_membership_that_trained_its_step_and_the_leavers_ledgers(
) -> None:
    coord = _loaded(3)
    coord.report(1, 0, 0.0, 1)
    assert coord.switch(generation=1, workers=1) == {"at": 2}
    # a pause at the switch step: the three old workers pause there, leavers included
    at_switch = [coord.arrive(r, 2, {}) for r in (2, 1, 0)]
    assert at_switch[-1].done()
    coord.release(2, finished=False)
    # a pause after it: the chief alone, but not before both leavers handed over
    chief = coord.arrive(0, 3, {0: torch.tensor([1, 0, 0, 0])})
    assert not chief.done()
    coord.hand_over(2, {0: torch.tensor([0, 1, 0, 0])})
    assert not chief.done()
    coord.hand_over(2, {0: torch.tensor([0, 0, 1, 1])})
    assert chief.wait() == 3
    assert coord.snapshot()[0][0].tolist() == [1, 1, 1, 1]


def test_a_ps_change_releases_the_workers_with_the_ps_to_call() -> None:
    coord = _loaded(2)
    assert coord.names() is None  # the job's first PS
    other = coord.arrive(1, 7, {})
    assert coord.arrive(0, 7, {}).done()
    reshard = {"ps_names": ["ps0", "ps1_g3"], "generation": 3}
    coord.release(7, finished=False, checkpointed=False, reshard=reshard)
    assert other.wait() == {"finished": False, "checkpoint_step": None, "reshard": reshard}
    assert coord.names() == ["ps0", "ps1_g3"]  # for the workers added later
