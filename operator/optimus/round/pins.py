"""Between steps 3 and 4 of a round, the pins (pure): which jobs the policy may not resize
this round, and to what they are held. One rule table for the operator and the simulator:

  a job that must hold (restarting after a failure, pod work in flight, its resize not
  settled, its metrics missing)                          -> its current allocation
and, for a policy that learns online (PolicyTraits.learns_online) and a job it does not
know from an oracle:
  a new job                                              -> its spec minimum
  a probing job whose current configuration is unmeasured -> its current allocation
  a probing job that measured it                         -> its next probe, the first of its
                                                            probes that fits beside the
                                                            others (`fit_probes`), or free
                                                            (no longer probing) when none fits
  a job whose epoch size is not measured yet             -> its current allocation
  a probing job whose probe no longer repays its cost (`too_late_to_probe`: its expected
  saving, from its remaining time and the error bands of its knowledge) is no longer
  probing, and free.
The rest are free: the policy sizes them within their spec's bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from optimus.round.knowledge import Knowledge
from optimus.scheduling.cluster import pinned
from optimus.scheduling.probes import fit_probes, probe_pays_back
from optimus.scheduling.types import Allocation, JobView, NodeView


def clip(allocation: Allocation, view: JobView) -> Allocation:
    """`allocation` within the view's bounds."""
    return Allocation(min(max(allocation.ps, view.min_ps), view.max_ps),
                      min(max(allocation.workers, view.min_workers), view.max_workers))


def too_late_to_probe(knowledge: Knowledge, current: Allocation, batch: int, mode: str,
                      restart_cost_seconds: float, *, weigh_bands: bool = True) -> Knowledge:
    """The job's knowledge with its probing ended when a probe no longer repays its cost
    (`probe_pays_back`: the predicted remaining time at its current allocation, at the low
    end of its convergence band, times the error band of its speed knowledge there; with
    `weigh_bands` False, the remaining time alone); from then on the policy judges it by
    what it has measured. A job whose epoch size is not measured yet, or whose remaining
    time is unknown, keeps probing."""
    if not knowledge.probing or not knowledge.samples_per_epoch:
        return knowledge
    remaining = knowledge.remaining_time(batch, mode)(current.ps, current.workers)
    if not weigh_bands:
        pays = probe_pays_back(remaining, restart_cost_seconds)
    else:
        pays = probe_pays_back(remaining, restart_cost_seconds,
                               knowledge.speed_band(current.ps, current.workers),
                               knowledge.convergence_band)
    if pays:
        return knowledge
    return replace(knowledge, probing=False, next_probe=None, probes=())


def pin(view: JobView, knowledge: Knowledge, *, hold: bool, learns: bool) -> Allocation | None:
    """The allocation the job is held to this round (None: free), by the module's table;
    `view` carries the spec's bounds and the current allocation."""
    here = view.current
    if here is not None and hold:
        return here
    if not learns or knowledge.oracle is not None:
        return None
    if here is None and (knowledge.speed is None or not knowledge.samples_per_epoch):
        return Allocation(view.min_ps, view.min_workers)
    if here is None:  # the kind's knowledge sizes it (optimus.round.store)
        return None
    if knowledge.probing or knowledge.samples_per_epoch is None:
        measured = any((p, w) == (here.ps, here.workers) for p, w, _ in knowledge.speed_samples)
        if measured and knowledge.probing and knowledge.next_probe is not None:
            return clip(Allocation(*knowledge.next_probe), view)
        return here
    return None


def moving_to_probe(view: JobView, knowledge: Knowledge, held: Allocation | None) -> bool:
    """Whether the job is pinned to a probe other than where it runs."""
    return (held is not None and knowledge.probing and view.current is not None
            and held != view.current)


def fit_probes_to_capacity(
    views: Sequence[JobView],
    knowledge: Mapping[str, Knowledge],
    pins: Mapping[str, Allocation | None],
    nodes: Sequence[NodeView],
) -> tuple[dict[str, Allocation | None], dict[str, Knowledge]]:
    """Each job moving to a probe re-pinned to the first of its probes the cluster can hold
    (`optimus.scheduling.probes.fit_probes`: beside what every other job holds, never
    shrinking a running neighbour); a job none of whose probes fits is free this round and
    no longer probing, judged by its nearest measurement rather than frozen at its size
    until room appears. Returns the new pins and knowledge of every job."""
    wanted = {v.id: tuple(clip(Allocation(*p), v) for p in knowledge[v.id].probes)
              for v in views if moving_to_probe(v, knowledge[v.id], pins.get(v.id))}
    new_pins = dict(pins)
    new_knowledge = dict(knowledge)
    if not wanted:
        return new_pins, new_knowledge
    # the probing jobs' views carry their spec's bounds, the others their pins
    pinned_views = [v if v.id in wanted or (held := pins.get(v.id)) is None
                    else pinned(v, held) for v in views]
    for job_id, probe in fit_probes(pinned_views, nodes, wanted).items():
        new_pins[job_id] = probe
        if probe is None:
            new_knowledge[job_id] = replace(knowledge[job_id], probing=False)
    return new_pins, new_knowledge

