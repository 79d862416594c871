"""Which probe each learning job runs this round (pure): the rules the operator
(optimus.kube.plan) and the simulator (optimus.simulation.engine) share, so that a
simulated cluster probes exactly as the real one does.

A job whose speed model cannot be fitted yet is pinned, between steps 3 and 4 of a round,
to a probe configuration (`optimus.models.probes_within_box` proposes them, best first).
Two rules decide whether, and to which, it moves:

* `probe_pays_back`: a probe is worth its restarts only while what it is expected to save
  (the time the job has left, at the low end of its convergence band, times the error band
  of its speed knowledge) exceeds them;
* `fit_probes`: a probe must fit beside what every other job holds now; it never shrinks
  a running neighbour, and a job none of whose probes fits is left to the policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from optimus.models.confidence import UNKNOWN_BAND
from optimus.scheduling.cluster import demand_triple, start_round
from optimus.scheduling.types import Allocation, JobView, NodeView

#: a probe costs this many restarts: one to reach it and, unless it is the best size, one
#: to leave, plus its measuring span at a size that may be worse (about two more)
PROBE_PAYBACK_RESTARTS = 4.0
#: the convergence band counts at most this much in `probe_pays_back`: a job with no loss
#: model is judged on half its maxEpochs-bound remaining time, not on none
MAX_WORK_BAND = 0.5
#: how many probe configurations a probing job may choose among when its first choice
#: does not fit beside the other jobs (see `fit_probes`)
MAX_PROBE_CHOICES = 6


def probe_pays_back(remaining_seconds: float, restart_cost_seconds: float,
                    speed_band: float = UNKNOWN_BAND, work_band: float = 0.0) -> bool:
    """Whether a probe's expected saving repays its cost:

        remaining * (1 - min(work_band, MAX_WORK_BAND)) * min(speed_band, 1)
            >= PROBE_PAYBACK_RESTARTS * restart_cost

    A job predicted to need `remaining_seconds` more where it runs may be losing up to its
    speed knowledge's relative error band (`speed_band`, optimus.models.confidence) of it
    by running where that knowledge says; a measurement is what removes that loss, and the
    saving counts only the time the job surely has left (the low end of its remaining
    work's band). What the job saves is also what the cluster saves: the resources it
    holds are freed that much sooner. A job that knows nothing of its speed (the band
    UNKNOWN_BAND, the default) and its remaining work exactly is judged by its remaining
    time alone, the rule before the bands; an infinite remaining time always pays."""
    if math.isinf(remaining_seconds) and remaining_seconds > 0:
        return True
    surely_left = 1.0 - min(max(0.0, work_band), MAX_WORK_BAND)
    band = min(max(0.0, speed_band), UNKNOWN_BAND)
    saving = remaining_seconds * surely_left * band
    return not saving < PROBE_PAYBACK_RESTARTS * restart_cost_seconds


def fit_probes(
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    probes: Mapping[str, Sequence[Allocation]],
) -> dict[str, Allocation | None]:
    """For each job in `probes` (a running job that would move to a probe: its candidate
    configurations, best first), the first candidate the cluster can hold, or None when
    none fits. `jobs` are every job's views; those of the jobs in `probes` carry their own
    bounds, not a probe's (a job none of whose probes fits holds at least its minimum).

    A probe is pinned exactly (the policy may not change it), so a probe that does not fit
    would leave the job where it is, unmeasured, for as long as the other jobs hold their
    share: a newcomer that wants to measure 3 workers next to a job that holds 1 of 3 GPUs
    would never probe at all. Every other job first keeps what it holds (a running job its
    current allocation, a new one the minimum of its view's bounds); then, in the policy's
    order, each probing job takes the first of its candidates that fits what is left. A job
    with None is free for the round (judged by its measurements, like a fitted job).

    A probe never shrinks a running neighbour: that would cost the neighbour two restarts
    (down for the probe, back up as soon as the policy is free again) for a measurement of
    another job, and the policy, not a probe, decides who yields room. (The operator's
    contention scenario measured it: a newcomer's probe took a GPU from the job nearest to
    finishing, the policy gave it straight back, and each job paid two resizes for
    nothing.)"""
    if not probes or not jobs:
        return {}
    ordered, _, budget = start_round(jobs, nodes)
    for view in ordered:  # what the jobs that are not moving to a probe hold
        if view.id not in probes:
            held = view.current or Allocation(view.min_ps, view.min_workers)
            budget.try_take(view.id, demand_triple(view, held.ps, held.workers))
    chosen: dict[str, Allocation | None] = {}
    for view in ordered:
        if view.id not in probes:
            continue
        probe = next((c for c in probes[view.id]
                      if budget.fits(view.id, demand_triple(view, c.ps, c.workers))), None)
        held = probe or Allocation(view.min_ps, view.min_workers)
        budget.try_take(view.id, demand_triple(view, held.ps, held.workers))
        chosen[view.id] = probe
    return chosen
