"""The round's pins (optimus.round.pins, by the table in its docstring), keep-running, and
the policies' traits deciding what the round does for them."""

from __future__ import annotations

import math

import pytest
from optimus.models import ConvergenceRule
from optimus.round import (
    FittedJob,
    Knowledge,
    ModelMemory,
    RoundJob,
    SchedulingSettings,
    keep_running,
    schedule,
)
from optimus.round.pins import pin
from optimus.scheduling import POLICY_NAMES, POLICY_TRAITS, Allocation, NodeView, Resources
from optimus.scheduling.types import JobPlacement, JobView

HERE = Allocation(1, 2)
PROBE = (1, 4)
MEASURED_HERE = ((1, 2, 5.0),)


def _view(current: Allocation | None = HERE, job_id: str = "a",
          arrival: float = 0.0) -> JobView:
    return JobView(job_id, arrival, Resources(cpu=1), Resources(gpu=1, cpu=1), 1, 2, 1, 8,
                   lambda p, w: math.inf, current=current)


PROBING = Knowledge(probing=True, next_probe=PROBE, probes=(PROBE,), samples_per_epoch=100.0,
                    remaining_epochs=5.0)
FITTED = Knowledge(samples_per_epoch=100.0, remaining_epochs=5.0, speed_samples=MEASURED_HERE)


@pytest.mark.parametrize(("current", "knowledge", "hold", "learns", "expected"), [
    (HERE, FITTED, True, True, HERE),  # held: restarting, busy, resizing or blind
    (HERE, FITTED, True, False, HERE),  # for every policy
    (None, PROBING, False, True, Allocation(1, 1)),  # a new job starts at its minimum
    (None, PROBING, False, False, None),  # ... only under a learning policy
    (HERE, PROBING, False, True, HERE),  # this configuration not measured yet
    (HERE, Knowledge(**{**PROBING.__dict__, "speed_samples": MEASURED_HERE}), False, True,
     Allocation(*PROBE)),  # measured: on to the next probe
    (HERE, Knowledge(speed_samples=MEASURED_HERE, remaining_epochs=5.0), False, True,
     HERE),  # epoch size unknown
    (HERE, FITTED, False, True, None),  # fitted: free
    (HERE, PROBING, False, False, None),  # a policy that does not learn never probes
])
def test_the_pin_table(current: Allocation | None, knowledge: Knowledge, hold: bool,
                       learns: bool, expected: Allocation | None) -> None:
    assert pin(_view(current), knowledge, hold=hold, learns=learns) == expected


def test_keep_running_gives_a_running_job_its_allocation_back() -> None:
    views = [_view(HERE, "a"), _view(None, "b")]
    kept = keep_running(views, {"a": Allocation(0, 0), "b": Allocation(0, 0)})
    assert kept == {"a": HERE, "b": Allocation(0, 0)}


def test_every_policy_declares_its_traits() -> None:
    assert set(POLICY_TRAITS) == set(POLICY_NAMES)
    assert [n for n in POLICY_NAMES if POLICY_TRAITS[n].preempts] == ["tiresias"]


def _fitted(job_id: str, current: Allocation | None, remaining: float,
            arrival: float) -> FittedJob:
    view = _view(current, job_id, arrival)
    placement = None if current is None else JobPlacement(
        ("n",) * current.ps, ("n",) * current.workers)
    return FittedJob(RoundJob(view, 64, ConvergenceRule(), placement=placement),
                     ModelMemory(), Knowledge(remaining_epochs=remaining,
                                              samples_per_epoch=6400.0,
                                              speed_samples=((1, 1, 1.0),)))


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_a_policy_that_does_not_preempt_never_stops_a_running_job(policy: str) -> None:
    # one node with 1 GPU: "old" runs on it with a long way to go; "new", which arrived
    # earlier and needs little, was queued behind it
    nodes = [NodeView("n", Resources(gpu=1, cpu=8, memory=2**40))]
    old = _fitted("old", Allocation(1, 1), 50.0, arrival=10.0)
    new = _fitted("new", None, 0.5, arrival=0.0)
    outcome = schedule([old, new], nodes, SchedulingSettings(policy=policy), now=20.0)
    stopped = outcome.jobs["old"].placement is None
    assert stopped == (POLICY_TRAITS[policy].preempts and outcome.jobs["new"].placement
                       is not None)


@pytest.mark.parametrize(("policy", "value_of_information", "banded"), [
    ("optimus", True, True),
    ("optimus", False, False),  # the ablation: the restart rule alone
    ("optimus-paper", True, False),  # a policy that does not weigh uncertainty
    ("drf", True, False),
])
def test_the_round_hands_the_bands_to_a_policy_that_weighs_them(
        policy: str, value_of_information: bool, banded: bool) -> None:
    nodes = [NodeView("n", Resources(gpu=4, cpu=8, memory=2**40))]
    fitted = _fitted("a", Allocation(1, 1), 5.0, arrival=0.0)
    settings = SchedulingSettings(policy=policy, value_of_information=value_of_information)
    (view,) = schedule([fitted], nodes, settings, now=0.0).views
    assert (view.speed_band is not None) is banded
    if view.speed_band is not None:
        # measured at (1, 1) but no model: the nearest measurement, an unknown band
        assert view.speed_band(1, 2) == fitted.knowledge.speed_band(1, 2) == 1.0
