"""The rules of a membership change in place: requests, the switch step, the control route."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus_worker import contract
from optimus_worker.control import ControlServer
from optimus_worker.membership import (
    Membership,
    MembershipError,
    Switchboard,
    SwitchFailed,
    decode,
    encode,
    group_prefix,
    joins_in_place,
    parse_request,
    ps_join_key,
    ready_key,
    request_timeout,
    switch_step,
    workers_at,
)
from optimus_worker.net import free_port

CURRENT = Membership(generation=2, num_workers=3)


@pytest.mark.parametrize(("body", "names"), [
    ({"generation": 3}, "'workers'"),
    ({"workers": "4", "generation": 3}, "'workers'"),
    ({"workers": True, "generation": 3}, "'workers'"),
    ({"workers": 0, "generation": 3}, "'workers'=0 must be >= 1"),
    ({"workers": 4}, "'generation'"),
    ({"workers": 4, "generation": 2}, "above the job's current generation 2"),
    ({"workers": 3, "generation": 3}, "already has 3 workers"),
    ([4, 3], "JSON object"),
    (None, "JSON object"),
])
def test_a_bad_request_names_the_field_and_the_fix(body: Any, names: str) -> None:
    with pytest.raises(MembershipError, match=names):
        parse_request(body, CURRENT)


@pytest.mark.parametrize(("workers", "newcomers"), [(5, [3, 4]), (4, [3]), (2, []), (1, [])])
def test_a_request_names_the_new_membership_and_its_newcomers(
        workers: int, newcomers: list[int]) -> None:
    target = parse_request({"workers": workers, "generation": 7}, CURRENT)
    assert target == Membership(generation=7, num_workers=workers)
    assert list(target.newcomers(CURRENT.num_workers)) == newcomers


@given(workers=st.integers(1, 4096), generation=st.integers(0, 10**6))
def test_the_control_vector_carries_a_membership_exactly(workers: int, generation: int) -> None:
    target = Membership(generation=generation, num_workers=workers)
    assert decode(*encode(target)) == target
    assert decode(*encode(None)) is None


def test_each_membership_has_its_own_store_keys() -> None:
    assert len({group_prefix(g) for g in range(5)}) == 5
    assert ready_key(3, 1) != ready_key(4, 1) and not ready_key(3, 1).startswith(group_prefix(3))


@pytest.mark.parametrize(("value", "joins"), [(None, False), ("", False), ("0", False),
                                              ("1", True)])
def test_join_in_place_flag(value: str | None, joins: bool) -> None:
    env = {} if value is None else {contract.ENV_JOIN_IN_PLACE: value}
    assert joins_in_place(env) is joins


def test_a_bad_join_flag_names_the_variable() -> None:
    with pytest.raises(contract.ContractError, match=contract.ENV_JOIN_IN_PLACE):
        joins_in_place({contract.ENV_JOIN_IN_PLACE: "yes"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _board(clock: Clock, final_step: int = 100) -> Switchboard:
    return Switchboard(CURRENT, final_step, clock=clock, timeout_s=30)


def test_a_growth_is_due_once_every_newcomer_is_ready() -> None:
    clock = Clock()
    board = _board(clock)
    answer = board.request({"workers": 5, "generation": 3})
    asked: list[list[str]] = []
    ready = False

    def check(keys: Any) -> bool:
        asked.append(list(keys))
        return ready

    assert board.due(10, check) is None
    ready = True
    target = board.due(11, check)
    assert target == Membership(3, 5)
    assert asked[-1] == [ready_key(3, 3), ready_key(3, 4)]
    assert not answer.done()
    board.switched(target, {"step": 12})
    assert answer.result(timeout=0) == {"step": 12} and board.current == target
    assert board.due(12, check) is None  # answered: nothing pending


def test_a_shrink_is_due_at_once_without_asking_the_store() -> None:
    board = _board(Clock())
    board.request({"workers": 1, "generation": 3})
    assert board.due(0, lambda keys: pytest.fail("no newcomer to wait for")) == Membership(3, 1)


def test_one_request_at_a_time() -> None:
    board = _board(Clock())
    board.request({"workers": 4, "generation": 3})
    with pytest.raises(MembershipError, match="still being switched"):
        board.request({"workers": 2, "generation": 4})


@pytest.mark.parametrize(("step", "advance", "reason"), [
    (10, 31.0, "did not join within 30s"),
    (99, 0.0, "ends at step 100"),
])
def test_a_request_that_cannot_switch_fails_so_the_caller_restarts(
        step: int, advance: float, reason: str) -> None:
    clock = Clock()
    board = _board(clock)
    answer = board.request({"workers": 4, "generation": 3})
    clock.now += advance
    assert board.due(step, lambda keys: False) is None
    with pytest.raises(SwitchFailed, match=reason):  # answered 503: restart instead
        answer.result(timeout=0)
    assert board.current == CURRENT
    board.request({"workers": 4, "generation": 3})  # the board takes a new request


def test_a_finished_job_refuses_and_fails_what_is_pending() -> None:
    board = _board(Clock())
    answer = board.request({"workers": 4, "generation": 3})
    board.finish()
    with pytest.raises(SwitchFailed, match="finished"):
        answer.result(timeout=0)
    with pytest.raises(MembershipError, match="finished"):
        board.request({"workers": 4, "generation": 3})


def _post(port: int, path: str, data: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                     data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_control_endpoint_routes_membership_bodies() -> None:
    seen: list[Any] = []

    def membership(body: Any) -> dict[str, Any]:
        seen.append(body)
        return {"generation": parse_request(body, CURRENT).generation}

    server = ControlServer("127.0.0.1", free_port(), lambda: {}, lambda: {}, membership)
    server.start()
    try:
        path = contract.CONTROL_MEMBERSHIP_PATH
        assert _post(server.port, path, b'{"workers": 4, "generation": 3}') == (
            200, {"generation": 3})
        code, body = _post(server.port, path, b'{"workers": 4, "generation": 1}')
        assert code == 400 and "'generation'=1" in body["error"]
        assert _post(server.port, path, b"{not json")[0] == 400
        assert seen == [{"workers": 4, "generation": 3}, {"workers": 4, "generation": 1}]
    finally:
        server.server.shutdown()


@pytest.mark.parametrize(("changes", "step", "workers"), [
    ([(0, 2)], 0, 2), ([(0, 2)], 50, 2),
    ([(0, 1), (10, 3)], 9, 1), ([(0, 1), (10, 3)], 10, 3),
    ([(0, 1), (10, 3), (15, 2)], 14, 3), ([(0, 1), (10, 3), (15, 2)], 15, 2),
])
def test_workers_at_follows_the_last_change_up_to_the_step(
        changes: list[tuple[int, int]], step: int, workers: int) -> None:
    assert workers_at(changes, step) == workers


def test_workers_at_needs_a_membership_covering_the_step() -> None:
    with pytest.raises(ValueError, match="no membership covers step 3"):
        workers_at([(5, 2)], 3)


@given(pushed=st.integers(0, 1000), final=st.integers(1, 1000))
def test_the_switch_step_is_the_first_nobody_pushed_and_before_the_end(
        pushed: int, final: int) -> None:
    if pushed + 1 < final:
        assert switch_step(pushed, final) == pushed + 1
    else:
        with pytest.raises(SwitchFailed, match=f"ends at step {final}"):
            switch_step(pushed, final)


@pytest.mark.parametrize(("body", "timeout"), [({}, 120.0), ({"timeout_s": 2}, 2.0),
                                               ({"timeout_s": 0.5}, 0.5)])
def test_a_request_may_bound_its_wait_for_the_added_workers(body: Any, timeout: float) -> None:
    assert request_timeout(body, 120.0) == timeout


@pytest.mark.parametrize("value", [0, -1, "5", True, None])
def test_a_bad_timeout_is_refused(value: Any) -> None:
    with pytest.raises(MembershipError, match="'timeout_s'"):
        request_timeout({"timeout_s": value}, 120.0)


def test_a_request_with_its_own_timeout_fails_after_it() -> None:
    clock = Clock()
    board = _board(clock)
    answer = board.request({"workers": 4, "generation": 3, "timeout_s": 2})
    clock.now += 2.5
    assert board.due(10, lambda keys: False) is None
    with pytest.raises(SwitchFailed, match="did not join within 2s"):
        answer.result(timeout=0)


def test_a_switch_the_job_cannot_agree_on_fails_its_request() -> None:
    board = _board(Clock())
    answer = board.request({"workers": 4, "generation": 3})
    board.fail("the job ends at step 100")
    with pytest.raises(SwitchFailed, match="ends at step 100"):
        answer.result(timeout=0)
    assert board.current == CURRENT


PS_JOB = Membership(generation=2, num_workers=2, num_ps=1)


@pytest.mark.parametrize(("body", "target"), [
    ({"workers": 2, "ps": 2, "generation": 3}, Membership(3, 2, 2)),
    ({"workers": 3, "generation": 3}, Membership(3, 3, 1)),
    ({"workers": 3, "ps": 1, "generation": 3}, Membership(3, 3, 1)),
])
def test_a_ps_job_changes_its_ps_or_its_workers(body: Any, target: Membership) -> None:
    assert parse_request(body, PS_JOB) == target


@pytest.mark.parametrize(("body", "current", "names"), [
    ({"workers": 3, "ps": 2, "generation": 3}, PS_JOB, "one request each"),
    ({"workers": 2, "ps": 0, "generation": 3}, PS_JOB, "'ps'=0 must be >= 1"),
    ({"workers": 2, "ps": 1, "generation": 3}, PS_JOB, "already has 2 workers"),
    ({"workers": 3, "ps": 1, "generation": 3}, CURRENT, "no PS"),
])
def test_a_bad_ps_change_names_the_fix(body: Any, current: Membership, names: str) -> None:
    with pytest.raises(MembershipError, match=names):
        parse_request(body, current)


def test_a_ps_change_is_due_once_every_added_ps_serves() -> None:
    board = Switchboard(PS_JOB, 100, clock=Clock(), timeout_s=30)
    board.request({"workers": 2, "ps": 3, "generation": 3})
    asked: list[list[str]] = []
    assert board.due(5, lambda keys: bool(asked.append(list(keys)))) is None
    assert asked == [[ps_join_key(3, 1), ps_join_key(3, 2)]]
    assert board.due(6, lambda keys: True) == Membership(3, 2, 3)
