"""The fixed-allocation estimate: the demo's jobs replayed by the simulator (e2e.demo.fixed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimus.api.spec import parse_spec
from optimus.models.errors import ModelError
from optimus.models.speed import samples_per_second

from e2e.demo.fixed import (
    Observation,
    describe_method,
    fixed_allocation_estimates,
    initial_allocation,
    measured_speeds,
    memory_scale,
    rate_from_status,
    simulation_cluster,
    speed_params_from_status,
    speed_surface,
    start_seconds,
    trace_job,
)

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
BATCH = 64


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def template(role: str, cpu: str, memory: str, gpu: int = 0) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if gpu:
        resources["limits"] = {"nvidia.com/gpu": str(gpu)}
    return {"spec": {"containers": [{"name": role, "image": "worker:1",
                                     "resources": resources}]}}


def job(name: str, *, created: float = 0, ended: float | None, epoch: float | None = None,
        samples_per_epoch: float | None = 640.0,
        speed_samples: list[list[Any]] | None = None,
        theta: list[float] | None = None) -> dict[str, Any]:
    """A TrainingJob as `kubectl get -o json` returns it (PS 1-2, workers 1-4)."""
    model: dict[str, Any] = {"speedSamples": speed_samples or []}
    if samples_per_epoch is not None:
        model["samplesPerEpoch"] = samples_per_epoch
    if theta is not None:
        model["speed"] = {"mode": "ps-sync", "theta": theta}
    conditions = [{"type": "Valid", "status": "True", "lastTransitionTime": stamp(created)}]
    if ended is not None:
        conditions.append({"type": "Succeeded", "status": "True",
                           "lastTransitionTime": stamp(ended)})
    status: dict[str, Any] = {"phase": "Succeeded" if ended is not None else "Running",
                              "conditions": conditions, "model": model}
    if epoch is not None:
        status["progress"] = {"epoch": epoch}
    return {
        "metadata": {"name": name, "creationTimestamp": stamp(created)},
        "spec": {
            "mode": "ps-sync", "task": "mlp", "globalBatchSize": BATCH,
            "parameterServers": {"min": 1, "max": 2,
                                 "template": template("ps", "1", "512Mi")},
            "workers": {"min": 1, "max": 4,
                        "template": template("worker", "1", "1Gi", gpu=1)},
            "checkpoint": {"volume": {"emptyDir": {}}},
        },
        "status": status,
    }


def node(name: str, gpus: int = 4, cpus: int = 8, memory: str = "32Gi",
         unschedulable: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": str(cpus),
                                       "memory": memory}}}


def seen(*points: tuple[float, str, int | None, int | None, float | None]
         ) -> list[Observation]:
    return [Observation(*p) for p in points]


def started(start: float, ps: int = 1, workers: int = 1) -> list[Observation]:
    """Created at 0, allocated at 2, pods running at start - 3, progress seen at `start`."""
    return seen((0.5, "Pending", None, None, None), (2, "Resizing", ps, workers, None),
                (start - 3, "Probing", ps, workers, 0.0),
                (start, "Probing", ps, workers, 0.1))


# ---- table-driven: what the simulator answers for hand-made demos -----------------------

FLAT = [[1, 1, 1.0]]  # one step/s at (1, 1): 64 samples/s
GROWN = [[1, 1, 1.0], [1, 3, 3.0]]  # 64 samples/s on one worker, 192 on three

CASES: dict[str, tuple[list[dict[str, Any]], dict[str, list[Observation]],
                       list[dict[str, Any]], dict[str, float | None]]] = {
    # 10 s to start, then 90 s of training at 64 samples/s: the same 100 s when fixed
    "kept its allocation": (
        [job("a", ended=100, epoch=9.0, speed_samples=FLAT)],
        {"a": started(10)}, [node("n0")], {"a": 100.0}),
    # 20 s at 64 samples/s, a 5 s resize, 30 s at 192: 7040 samples, 110 s on one worker
    "grew to three workers": (
        [job("a", ended=65, epoch=11.0, speed_samples=GROWN)],
        {"a": [*started(10), Observation(30, "Resizing", 1, 3, 2.0),
               Observation(35, "Running", 1, 3, 2.1)]},
        [node("n0")], {"a": 120.0}),
    # one GPU: b (created at 5) waits for a (done at 60), is placed at the round at 65 and
    # runs 10 + 50 s: 120 s after its creation
    "queues behind the first job": (
        [job("a", ended=60, epoch=5.0, speed_samples=FLAT),
         job("b", created=5, ended=70, epoch=5.0, speed_samples=FLAT)],
        {"a": started(10), "b": started(10)}, [node("n0", gpus=1)],
        {"a": 60.0, "b": 120.0}),
    # an unfinished job and one without samples per epoch are left out; the rest runs
    "unknowns are left out": (
        [job("a", ended=100, epoch=9.0, speed_samples=FLAT),
         job("b", ended=None, epoch=3.0, speed_samples=FLAT),
         job("c", ended=100, epoch=9.0, samples_per_epoch=None, speed_samples=FLAT)],
        {"a": started(10), "b": started(10), "c": started(10)}, [node("n0")],
        {"a": 100.0, "b": None, "c": None}),
    # no speed measured and no fitted model: nothing to simulate it with
    "no speed known": (
        [job("a", ended=100, epoch=9.0)], {"a": started(10)}, [node("n0")], {"a": None}),
    # no poll ever showed progress: no start cost, no simulation
    "no start observed": (
        [job("a", ended=100, epoch=9.0, speed_samples=FLAT)],
        {"a": seen((2, "Resizing", 1, 1, None))}, [node("n0")], {"a": None}),
    # the only node is cordoned: the simulator refuses a cluster that cannot hold the job
    "no schedulable node": (
        [job("a", ended=100, epoch=9.0, speed_samples=FLAT)],
        {"a": started(10)}, [node("n0", unschedulable=True), node("n1", gpus=0)],
        {"a": None}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_simulator_replays_the_demo(case: str) -> None:
    jobs, timelines, nodes, expected = CASES[case]
    estimate = fixed_allocation_estimates(jobs, nodes, timelines, interval=10.0)
    assert set(estimate.seconds) == set(expected)
    for name, want in expected.items():
        got = estimate.seconds[name]
        assert (got is None) == (want is None), (name, got)
        if want is not None:
            assert got == pytest.approx(want, abs=1e-6), name


@settings(max_examples=40, deadline=None)
@given(start=st.integers(3, 60),
       spans=st.lists(st.tuples(st.integers(1, 60), st.sampled_from(["Running", "Resizing"]),
                                st.integers(1, 4)), max_size=8),
       last=st.integers(1, 60),
       interval=st.sampled_from([5.0, 10.0, 60.0]))
def test_a_flat_speed_gives_the_training_time_without_resize_downtime(
        start: int, spans: list[tuple[int, str, int]], last: int, interval: float) -> None:
    """Invariant: when a job's speed is the same at every size, the fixed world differs from
    the actual one only by the time spent resizing."""
    timeline = started(start)
    t, trained, resizing = float(start), 0.0, 0.0
    for span, phase, workers in [*spans, (last, "Running", 1)]:
        timeline.append(Observation(t, phase, 1, workers, 1.0))
        trained += span if phase == "Running" else 0.0
        resizing += span if phase == "Resizing" else 0.0
        t += span
    flat = [[1, w, 1.0] for w in range(1, 5)]  # 64 samples/s at every size
    obj = job("a", ended=t, epoch=trained * 64 / 640.0, speed_samples=flat)
    estimate = fixed_allocation_estimates([obj], [node("n0")], {"a": timeline},
                                          interval=interval)
    assert estimate.restart_cost == start
    assert estimate.seconds["a"] == pytest.approx(t - resizing, abs=1e-6)


# ---- the pieces ---------------------------------------------------------------------------

@pytest.mark.parametrize(("timeline", "expected"), [
    (started(12), 12.0),
    # the wait in the queue is the cluster's: the start is counted from the last Queued poll
    (seen((1, "Queued", None, None, None), (40, "Queued", None, None, None),
          (45, "Resizing", 1, 1, None), (52, "Running", 1, 1, 0.2)), 12.0),
    (seen((1, "Running", 1, 1, 0.0), (5, "Resizing", 1, 2, 0.0)), None),
    ([], None),
])
def test_a_start_lasts_until_progress_shows(timeline: list[Observation],
                                            expected: float | None) -> None:
    assert start_seconds(timeline) == expected


def test_the_initial_allocation_is_the_first_one_trained_with() -> None:
    timeline = [*started(10, 1, 2), Observation(30, "Running", 2, 4, 3.0)]
    assert initial_allocation(timeline) == (1, 2)
    assert initial_allocation(seen((0, "Resizing", 1, 1, None))) is None


def test_a_trace_job_is_pinned_to_its_size_with_the_spec_requests() -> None:
    obj = job("a", ended=100, epoch=4.5, samples_per_epoch=1000.0)
    trace = trace_job("a", obj, 7.0, (2, 3))
    assert trace is not None
    assert (trace.arrival, trace.epochs, trace.dataset_size) == (7.0, 4.5, 1000.0)
    assert (trace.min_ps, trace.max_ps, trace.ps) == (2, 2, 2)
    assert (trace.min_workers, trace.max_workers, trace.workers) == (3, 3, 3)
    assert (trace.gpus_per_worker, trace.cpus_per_ps, trace.cpus_per_worker) == (1, 1, 1)
    assert (trace.mode, trace.batch_size) == ("ps-sync", BATCH)
    obj["status"]["model"]["convergedEpoch"] = 3.0
    del obj["status"]["progress"]
    converged = trace_job("a", obj, 0.0, (1, 1))
    assert converged is not None and converged.epochs == 3.0
    obj["spec"]["globalBatchSize"] = -1
    assert trace_job("a", obj, 0.0, (1, 1)) is None


def test_the_surface_uses_measurements_then_the_model_then_the_nearest_measurement() -> None:
    theta = [0.001, 0.01, 0.002, 0.003, 0.001]
    modelled = job("a", ended=None, speed_samples=[[1, 1, 2.0]], theta=theta)
    surface = speed_surface("a", modelled, (1, 1))
    params = speed_params_from_status(modelled)
    assert surface is not None and params is not None
    assert (surface.ps_min, surface.ps_max, surface.workers_min, surface.workers_max) == (
        1, 2, 1, 4)
    assert surface.samples_per_sec(1, 1) == 2.0 * BATCH
    assert surface.samples_per_sec(2, 3) == pytest.approx(samples_per_second(params, 2, 3))
    measured_only = job("b", ended=None, speed_samples=[[1, 1, 2.0], [1, 4, 5.0]])
    surface = speed_surface("b", measured_only, (1, 1))
    assert surface is not None
    assert surface.samples_per_sec(2, 2) == 2.0 * BATCH  # (1, 1) is nearest
    assert surface.samples_per_sec(2, 4) == 5.0 * BATCH
    assert speed_surface("c", job("c", ended=None), (1, 1)) is None


def test_the_cluster_is_the_schedulable_nodes_with_memory_in_simulator_units() -> None:
    nodes = [node("n0"), node("n1", gpus=2, cpus=4, memory="16Gi"),
             node("n2", unschedulable=True)]
    cluster = simulation_cluster(nodes, 8.0)
    assert [n.name for n in cluster.nodes] == ["n0", "n1"]
    assert cluster.total.gpu == 6 and cluster.total.cpu == 12
    assert cluster.total.memory == 8 * 48 * 1024**3
    trace = trace_job("a", job("a", ended=1, epoch=1.0), 0.0, (1, 2))
    assert trace is not None
    spec_pods = job("a", ended=1)["spec"]
    # the simulator charges 4 GiB a PS and 8 GiB a worker; the pods ask 512 MiB and 1 GiB
    assert memory_scale([(trace, parse_spec(spec_pods))]) == 8.0


def test_the_method_line_names_the_simulator_and_its_inputs() -> None:
    estimate = fixed_allocation_estimates(
        [job("a", ended=100, epoch=9.0, speed_samples=FLAT)], [node("n0")],
        {"a": started(10)}, interval=10.0)
    line = describe_method(estimate)
    assert "simulator" in line and "policy fixed" in line and "restart cost 10 s" in line
    assert "1 finished job" in line and "interval 10 s" in line


# ---- rates from the operator's status ------------------------------------------------------

def test_the_rate_comes_from_the_fitted_speed_model_in_status() -> None:
    obj = job("a", ended=None, theta=[0.001, 0.01, 0.002, 0.003, 0.001])
    params = speed_params_from_status(obj)
    # The operator's convention: sync speeds are job steps/s of the whole global batch.
    assert params is not None and params.batch_scope == "per-worker" and params.batch_size == 64
    rate = rate_from_status(obj)
    assert rate is not None and rate(1, 2) == pytest.approx(samples_per_second(params, 1, 2))
    obj["status"]["model"]["speed"]["theta"] = ["x"]
    assert rate_from_status(obj) is None
    del obj["status"]["model"]
    assert rate_from_status(obj) is None


def test_measured_speeds_win_over_the_model_where_the_job_ran() -> None:
    obj = job("a", ended=None, speed_samples=[[1, 1, 2.0], [1, 1, 4.0], [1, 2, 5.0],
                                              [1, "x", 9.0], [0, 0, -1]])
    assert measured_speeds(obj) == {(1, 1): 3.0, (1, 2): 5.0}
    rate = rate_from_status(obj)
    assert rate is not None
    assert (rate(1, 1), rate(1, 2)) == (3.0 * 64, 5.0 * 64)  # job steps of the global batch
    with pytest.raises(ModelError):
        rate(2, 3)  # neither measured nor modelled
