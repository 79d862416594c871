"""How long does the operator take: one scheduling round at 200 jobs x 100 nodes, and the
time from `kubectl apply` of a TrainingJob to its first running pod?

Method (everything real except the pods' work: their command is `sleep`, so that hundreds
of pods fit on a small machine):

round     An e2e local cluster (optimus's test Kubernetes: real HTTP API, scheduler,
          process kubelet) with N nodes of 4 simulated GPUs, the CRD, and a real
          Prometheus. J TrainingJobs (ps-sync, 1..4 PS, 1..8 workers, a worker asks one
          GPU) are created with a status.model already holding 10 loss points and 6 speed
          points (synthetic, seeded, from the Optimus equations), so the fit step fits
          every job. Then `optimus.kube.controller.Controller.run_round` runs against the
          cluster, which serves from a thread of this same process: the API server, the
          kubelet supervising hundreds of pods and the round share one interpreter, so
          the snapshot and act steps include the API server's own time. Steps: 1 snapshot
          (list nodes, pods), 2 observe (the four range queries), 3 fit, 4 allocate,
          5 place, 6 act (write every changed status; pod creation runs in background
          tasks, timed separately as "pods created"). Four rounds in a row, each after
          the previous one's pods run: "admit" starts every job at its minimum, "grow"
          finds the jobs running with fitted models and lets the policy resize them (each
          resize asks the old chief for a checkpoint: `sleep` pods refuse at once),
          "settle" records that the new pods run, "steady" finds nothing to change.
          Baseline, in the same run: the same at 20 jobs x 10 nodes; the ratio column is
          200x100 / 20x10 for the admit round. The fit code is warmed up once first.
apply     The whole stack (e2e.demo.stack: local cluster, CRD, Prometheus and the
          operator as its own process, `python -m optimus.kube`): the time from running
          `kubectl apply -f job.yaml` to the first pod of the job in phase Running, median
          of --repeat jobs. Baseline: `kubectl apply` of a bare Pod to Running on the same
          cluster (the ratio is the operator's overhead on top of Kubernetes' own path).

cpu       (--round-cpu, on its own) The operator's CPU per round at J jobs x N nodes x
          10 J pods (default 200 x 100 x 2,000). The local cluster runs as its own process
          (`python -m e2e.localcluster`), so the benchmark's process is the operator alone;
          its N nodes are "hollow" (Node objects no kubelet serves: 16 GPUs, 64 CPUs each)
          and every job already runs at 2 PS x 8 workers, its 10 pods bound to them and
          marked Running through the pods' status, with a fitted status.model and a real
          Prometheus (that has no series of them: the jobs are blind and keep their size).
          Same cluster, same run, two ways to take a round's snapshot:
            list     nodes and every pod listed from the API each round (the operator
                     before kopf indices): `Controller.run_round` on `listed_snapshot`;
            indices  the operator's kopf registry (optimus.kube.handlers) running in this
                     process: kopf's watches keep jobs, pods and nodes in indices and its
                     timer runs the rounds.
          Per round: CPU seconds of the process over the round (time.process_time, all
          threads: the kubernetes client's, kopf's watches), median of the rounds after
          the first; also CPU per interval, the process's CPU over the whole measuring
          window divided by the rounds in it (kopf's timers and watch events between
          rounds included).

Run from the repository root:  .venv/bin/python benchmarks/operator.py [--quick]
                               .venv/bin/python benchmarks/operator.py --round-cpu
Plot: benchmarks/out/operator.png; numbers: benchmarks/out/operator.json
(--round-cpu: benchmarks/out/operator_cpu.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optimus.api import parse_training_job  # noqa: E402
from optimus.api.spec import GROUP, PLURAL, VERSION  # noqa: E402
from optimus.api.status import iso, parse_status  # noqa: E402
from optimus.kube.builders import build_pods  # noqa: E402
from optimus.kube.client import KubernetesApi  # noqa: E402
from optimus.kube.config import OperatorConfig  # noqa: E402
from optimus.kube.controller import Controller, RoundReport, listed_snapshot  # noqa: E402
from optimus.kube.handlers import build_registry  # noqa: E402
from optimus.metrics.exporter import ROUND_STEPS, OperatorMetrics  # noqa: E402
from optimus.metrics.prometheus import HttpPrometheusClient  # noqa: E402
from optimus.models import SpeedSample, fit_loss, fit_speed  # noqa: E402
from optimus_worker import contract  # noqa: E402

from e2e.demo.kubectl import Kubectl  # noqa: E402
from e2e.demo.stack import CRD_PATH, OperatorSettings, Stack, StackConfig, python_env  # noqa: E402
from e2e.localcluster import LocalCluster  # noqa: E402
from e2e.prometheus import LocalPrometheus  # noqa: E402

OUT = REPO / "benchmarks" / "out"
KINDS = ("admit", "grow", "settle", "steady")
NAMESPACE = "default"


def job_manifest(name: str, rng: random.Random, checkpoints: Path) -> dict[str, Any]:
    container = {"image": "busybox", "command": ["sleep", "600"]}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "mode": "ps-sync", "task": "mlp", "globalBatchSize": 256,
            "convergence": {"lossDelta": 0.01, "window": 5, "maxEpochs": 100},
            "parameterServers": {"min": 1, "max": rng.randint(1, 4), "template": {"spec": {
                "containers": [{**container, "name": "ps",
                                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}},
            "workers": {"min": 1, "max": rng.randint(2, 8), "template": {"spec": {
                "containers": [{**container, "name": "worker",
                                "resources": {"requests": {"cpu": "2", "memory": "8Gi"},
                                              "limits": {"nvidia.com/gpu": "1"}}}]}}},
            "checkpoint": {"volume": {"hostPath": {"path": str(checkpoints)}},
                           "mountPath": str(checkpoints)},
        },
    }


def model_status(rng: random.Random) -> dict[str, Any]:
    """10 loss points of l(k) = 1/(b0 k + b1) + b2 with noise, and 6 speed points of the
    sync equation in job steps/s (what the operator stores in status.model)."""
    b0, b1, b2 = rng.uniform(0.05, 0.5), rng.uniform(0.5, 2), rng.uniform(0.01, 0.2)
    loss = [[float(k), (1 / (b0 * k + b1) + b2) * rng.uniform(0.98, 1.02)] for k in range(1, 11)]
    t = [rng.uniform(1e-4, 1e-3), rng.uniform(0.01, 0.05), rng.uniform(0, 0.02),
         rng.uniform(0, 0.005), rng.uniform(0, 0.005)]

    def speed(p: int, w: int) -> float:
        return 1 / (t[0] * 256 / w + t[1] + t[2] * w / p + t[3] * w + t[4] * p)

    configs = [(1, 1), (1, 2), (2, 1), (1, 3), (2, 4), (3, 2)]
    return {"model": {"lossSamples": loss,
                      "speedSamples": [[p, w, speed(p, w)] for p, w in configs],
                      "samplesPerEpoch": 50000.0}}


async def one_scale(jobs: int, nodes: int, workdir: Path, progress: Progress
                    ) -> dict[str, Any]:
    """Cold and warm rounds at one scale, against a fresh local cluster + Prometheus."""
    rng = random.Random(jobs * 1000 + nodes)
    checkpoints = workdir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    os.environ.update(python_env())
    with LocalCluster(nodes=nodes, gpus_per_node=4, cpus_per_node=64,
                      memory_per_node="512Gi", workdir=workdir / "cluster") as cluster, \
            LocalPrometheus(cluster.kubeconfig, workdir / "prometheus") as prometheus:
        prometheus.wait_ready(60)
        kubectl = Kubectl(Path(cluster.kubeconfig))
        kubectl.apply(CRD_PATH)
        kubectl.run("wait", "--for=condition=Established", "crd/trainingjobs.optimus.dev",
                    "--timeout=60s", namespaced=False)
        client = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        custom = kubernetes.client.CustomObjectsApi(client)
        task = progress.add_task(f"{jobs} jobs x {nodes} nodes: creating jobs", total=jobs)

        def create(i: int) -> None:
            name = f"job-{i:04d}"
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                   job_manifest(name, rng, checkpoints))
            custom.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL,
                                                         name, {"status": model_status(rng)})
            progress.advance(task)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(jobs)))
        api = KubernetesApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
        core = kubernetes.client.CoreV1Api(client)
        config = OperatorConfig(prometheus_url=prometheus.url, interval_seconds=60)
        async with HttpPrometheusClient(prometheus.url) as prom:
            controller = Controller(config, api, prom, OperatorMetrics())
            rounds: dict[str, Any] = {}
            pods_created = 0.0
            pods = 0
            for kind in KINDS:
                progress.update(task, description=f"{jobs} jobs x {nodes} nodes: {kind}")
                jobs = await api.list_jobs(NAMESPACE)
                report = await controller.run_round(functools.partial(listed_snapshot, api,
                                                                      jobs))
                rounds[kind] = _summary(report)
                started = time.perf_counter()
                await controller.settle()
                if kind == "admit":
                    pods_created = time.perf_counter() - started
                pods = await _all_running(core)
        progress.update(task, description=f"{jobs} jobs x {nodes} nodes: done")
    return {"jobs": jobs, "nodes": nodes, **rounds, "pods_created_seconds": pods_created,
            "pods": pods}


async def _all_running(core: Any, timeout: float = 180) -> int:
    """Wait until every job pod runs (bounded); their count."""
    deadline = time.monotonic() + timeout
    while True:
        pods = (await asyncio.to_thread(core.list_namespaced_pod, NAMESPACE,
                                        label_selector=contract.POD_LABEL_JOB)).items
        if all(p.status.phase == "Running" for p in pods) or time.monotonic() > deadline:
            return len(pods)
        await asyncio.sleep(0.5)


def _warm_up() -> None:
    """Fit one synthetic job once, so that one-time costs (imports, caches) of the model
    code do not land in whichever round runs first."""
    model = model_status(random.Random(0))["model"]
    epochs, losses = zip(*model["lossSamples"], strict=True)
    fit_loss(list(epochs), list(losses))
    samples = [SpeedSample(int(p), int(w), s) for p, w, s in model["speedSamples"]]
    fit_speed(samples, "ps-sync", 256)


def _summary(report: RoundReport) -> dict[str, Any]:
    return {"seconds": dict(report.seconds), "total": sum(report.seconds.values()),
            "patched": report.patched, "rolled": report.rolled}


def _wait_running(kubectl: Kubectl, selector: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in kubectl.items("pods", "-l", selector):
            if (pod.get("status") or {}).get("phase") == "Running":
                return
        time.sleep(0.1)
    raise TimeoutError(f"no running pod for {selector} within {timeout} s")


def apply_latency(workdir: Path, repeat: int, progress: Progress) -> dict[str, Any]:
    settings = OperatorSettings(interval_seconds=60)
    config = StackConfig(workdir=workdir, nodes=2, operator=settings)
    rng = random.Random(7)
    job_seconds: list[float] = []
    pod_seconds: list[float] = []
    task = progress.add_task("kubectl apply -> first running pod", total=2 * repeat)
    with Stack(config) as stack:
        checkpoints = workdir / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        for i in range(repeat):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"bare-{i}", "labels": {"bench": f"bare-{i}"}},
                   "spec": {"containers": [{"name": "c", "image": "busybox",
                                            "command": ["sleep", "600"]}]}}
            path = workdir / f"pod-{i}.yaml"
            path.write_text(yaml.safe_dump(pod))
            began = time.perf_counter()
            stack.kubectl.apply(path)
            _wait_running(stack.kubectl, f"bench=bare-{i}")
            pod_seconds.append(time.perf_counter() - began)
            progress.advance(task)
            name = f"latency-{i}"
            path = workdir / f"job-{i}.yaml"
            path.write_text(yaml.safe_dump(job_manifest(name, rng, checkpoints)))
            began = time.perf_counter()
            stack.kubectl.apply(path)
            _wait_running(stack.kubectl, f"{contract.POD_LABEL_JOB}={name}")
            job_seconds.append(time.perf_counter() - began)
            progress.advance(task)
            stack.kubectl.delete("trainingjob", name)
            stack.kubectl.delete("pod", f"bare-{i}")
    return {"job_seconds": job_seconds, "pod_seconds": pod_seconds,
            "job_median": statistics.median(job_seconds),
            "pod_median": statistics.median(pod_seconds)}


# ---- --round-cpu: the operator's CPU per round, list-every-round vs kopf indices ----------------
@contextlib.contextmanager
def _cluster_process(workdir: Path) -> Any:
    """The local cluster as its own process (one kubelet node); yields its kubeconfig."""
    workdir.mkdir(parents=True)
    log = (workdir.parent / "cluster.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "e2e.localcluster", "up", "--nodes", "1", "--workdir",
         str(workdir)], stdout=subprocess.PIPE, stderr=log, cwd=REPO,
        env={**os.environ, **python_env()}, text=True)
    try:
        assert process.stdout is not None
        kubeconfig = process.stdout.readline().strip()
        if not kubeconfig:
            raise RuntimeError("the local cluster did not start: "
                               f"{(workdir.parent / 'cluster.log').read_text()[-2000:]}")
        yield Path(kubeconfig)
    finally:
        process.terminate()
        process.wait(60)
        log.close()
        if process.returncode not in (0, -15):
            print((workdir.parent / "cluster.log").read_text()[-3000:], file=sys.stderr)


def hollow_node(name: str) -> dict[str, Any]:
    resources = {"nvidia.com/gpu": "16", "cpu": "64", "memory": "512Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _populate(kubeconfig: Path, jobs: int, nodes: int, workdir: Path,
              progress: Progress) -> None:
    """N hollow nodes; J jobs running at 2 PS x 8 workers, two jobs per node, their pods
    bound and Running."""
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    core = kubernetes.client.CoreV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    rng = random.Random(jobs * 1000 + nodes)
    for i in range(nodes):
        body = hollow_node(f"hollow-{i:03d}")
        core.create_node(body)
        core.patch_node_status(body["metadata"]["name"], {"status": body["status"]})
    task = progress.add_task(f"{jobs} jobs x {nodes} nodes: jobs and pods", total=jobs)
    now = time.time()

    def create(i: int) -> None:
        name = f"job-{i:04d}"
        node = f"hollow-{(i // 2) % nodes:03d}"
        manifest = job_manifest(name, rng, workdir)
        manifest["spec"]["parameterServers"]["max"] = 4
        manifest["spec"]["workers"]["max"] = 8
        created = custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                         manifest)
        status = {**model_status(rng), "phase": "Running", "allocation": {
            "ps": 2, "workers": 8, "generation": 0, "nodes": [node],
            "placement": {"ps": [node] * 2, "workers": [node] * 8}, "reason": "allocation",
            "updatedAt": iso(now - 700), "runningSince": iso(now - 600)}}
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name,
                                                     {"status": status})
        allocation = parse_status(status).allocation
        assert allocation is not None
        for pod in build_pods(parse_training_job(created), allocation):
            core.create_namespaced_pod(NAMESPACE, pod)
            core.patch_namespaced_pod_status(pod["metadata"]["name"], NAMESPACE, {
                "status": {"phase": "Running", "podIP": "",
                           "conditions": [{"type": "Ready", "status": "True"}]}})
        progress.advance(task)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(jobs)))


async def _list_rounds(kubeconfig: Path, prometheus_url: str, rounds: int) -> dict[str, Any]:
    api = KubernetesApi(kubernetes.config.new_client_from_config(str(kubeconfig)))
    jobs = await api.list_jobs(NAMESPACE)
    config = OperatorConfig(prometheus_url=prometheus_url, interval_seconds=5)
    reports = []
    async with HttpPrometheusClient(prometheus_url) as prom:
        controller = Controller(config, api, prom, OperatorMetrics())
        began = time.process_time()
        for _ in range(rounds):
            reports.append(await controller.run_round(
                functools.partial(listed_snapshot, api, jobs)))
            await controller.settle()
        total = time.process_time() - began
    return _cpu_summary(reports, total, rounds)


async def _indexed_rounds(kubeconfig: Path, prometheus_url: str, rounds: int
                          ) -> dict[str, Any]:
    """The operator's kopf registry in this process until it has run `rounds` rounds."""
    # the operator's credentials are the kubernetes client's default kubeconfig, which
    # the client reads from $KUBECONFIG when it is imported: point it at the cluster
    kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
    config = OperatorConfig(prometheus_url=prometheus_url, interval_seconds=5,
                            metrics_port=0, peering="")
    box: dict[str, Controller] = {}
    reports: list[RoundReport] = []
    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(
        registry=build_registry(config, box), standalone=True, clusterwide=True,
        stop_flag=stop))
    deadline = time.monotonic() + 300

    async def until(done: Any, what: str) -> None:
        while not done():
            if operator.done() or time.monotonic() > deadline:
                stop.set()
                raise RuntimeError(f"the operator never got to {what}")
            await asyncio.sleep(0.1)

    await until(lambda: "controller" in box, "start")
    controller = box["controller"]
    run_round = controller.run_round

    async def recorded(source: Any) -> RoundReport:
        report = await run_round(source)
        reports.append(report)
        return report

    controller.run_round = recorded  # type: ignore[method-assign]
    await until(lambda: reports, "a first round")  # kopf has filled its indices
    began = time.process_time()
    counted = len(reports)
    await until(lambda: len(reports) >= counted + rounds, f"{rounds} more rounds")
    total = time.process_time() - began
    stop.set()
    await operator
    return _cpu_summary(reports[: counted + rounds], total, rounds)


def _cpu_summary(reports: list[RoundReport], window_cpu: float,
                 window_rounds: int) -> dict[str, Any]:
    """`window_cpu`: the process's CPU over the last `window_rounds` rounds."""
    steady = reports[1:] or reports
    return {"rounds": [{"cpu": r.cpu_seconds, "wall": sum(r.seconds.values()),
                        "seconds": r.seconds, "jobs": r.jobs, "patched": r.patched}
                       for r in reports],
            "first_cpu": reports[0].cpu_seconds,
            "median_cpu": statistics.median(r.cpu_seconds for r in steady),
            "median_wall": statistics.median(sum(r.seconds.values()) for r in steady),
            "median_snapshot": statistics.median(r.seconds["snapshot"] for r in steady),
            "cpu_per_interval": window_cpu / window_rounds,
            "jobs": reports[-1].jobs}


def round_cpu(jobs: int, nodes: int, rounds: int, console: Console, machine: str) -> int:
    results: dict[str, Any] = {"machine": machine, "jobs": jobs, "nodes": nodes,
                               "pods": 10 * jobs}
    with tempfile.TemporaryDirectory(prefix="bench-operator-cpu-") as tmp, Progress(
            console=console, transient=True) as progress:
        work = Path(tmp)
        with _cluster_process(work / "cluster") as kubeconfig, \
                LocalPrometheus(kubeconfig, work / "prometheus") as prometheus:
            prometheus.wait_ready(60)
            kubectl = Kubectl(kubeconfig)
            kubectl.apply(CRD_PATH)
            kubectl.run("wait", "--for=condition=Established", "crd/trainingjobs.optimus.dev",
                        "--timeout=60s", namespaced=False)
            _populate(kubeconfig, jobs, nodes, work / "checkpoints", progress)
            progress.add_task(f"rounds: list every round, then kopf indices ({rounds} each)")
            results["list"] = asyncio.run(_list_rounds(kubeconfig, prometheus.url, rounds))
            results["indices"] = asyncio.run(_indexed_rounds(kubeconfig, prometheus.url,
                                                             rounds))
    listed, indexed = results["list"], results["indices"]
    table = Table(title=f"Operator CPU per round, {jobs} jobs x {nodes} nodes x {10 * jobs} "
                        f"pods, median of {rounds - 1} steady rounds ({machine})")
    table.add_column("snapshot from")
    for column in ("CPU / round", "wall / round", "snapshot step (wall)", "first round CPU",
                   "CPU / interval"):
        table.add_column(column, justify="right")
    for label, summary in (("list nodes + pods every round (before)", listed),
                           ("kopf indices (after)", indexed)):
        table.add_row(label, f"{summary['median_cpu'] * 1000:,.0f} ms",
                      f"{summary['median_wall'] * 1000:,.0f} ms",
                      f"{summary['median_snapshot'] * 1000:,.0f} ms",
                      f"{summary['first_cpu'] * 1000:,.0f} ms",
                      f"{summary['cpu_per_interval'] * 1000:,.0f} ms")
    ratio = listed["median_cpu"] / max(indexed["median_cpu"], 1e-9)
    table.add_row("ratio before / after", f"{ratio:.1f}x", "", "", "", "")
    console.print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "operator_cpu.json").write_text(json.dumps(results, indent=2))
    console.print(f"numbers: {OUT / 'operator_cpu.json'}")
    return 0 if indexed["median_cpu"] < 1.0 else 1


def _plot(results: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    scales = results["rounds"]
    width = 0.8 / (len(KINDS) * len(scales))
    for i, scale in enumerate(scales):
        for j, kind in enumerate(KINDS):
            values = [max(scale[kind]["seconds"].get(step, 0) * 1000, 0.01)
                      for step in ROUND_STEPS]
            offset = (len(KINDS) * i + j) * width
            ax.bar([x + offset for x in range(len(ROUND_STEPS))], values, width,
                   label=f"{scale['jobs']} jobs x {scale['nodes']} nodes, {kind}")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(ROUND_STEPS))], ROUND_STEPS)
    ax.set_ylabel("milliseconds")
    ax.set_yscale("log")
    ax.set_title("One scheduling round, by step (local cluster, real Prometheus)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = OUT / "operator.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="jobs for the apply latency")
    parser.add_argument("--quick", action="store_true", help="50 jobs x 25 nodes, 1 repeat")
    parser.add_argument("--round-cpu", action="store_true",
                        help="only the operator's CPU per round at --jobs x --nodes x 10 "
                             "pods a job: listing every round vs kopf indices")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per way (--round-cpu)")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.nodes, args.repeat = 50, 25, 1
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)
    # `sleep` pods have no control endpoint: every checkpoint request is refused (logged)
    logging.getLogger("optimus.kube").setLevel(logging.ERROR)
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, " \
              f"Python {platform.python_version()}"
    if args.round_cpu:
        return round_cpu(args.jobs, args.nodes, args.rounds, console, machine)
    results: dict[str, Any] = {"machine": machine, "rounds": []}
    _warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp, Progress(
            console=console, transient=True) as progress:
        for jobs, nodes in ((20, 10), (args.jobs, args.nodes)):
            results["rounds"].append(asyncio.run(one_scale(
                jobs, nodes, Path(tmp) / f"{jobs}x{nodes}", progress)))
        results["apply"] = apply_latency(Path(tmp) / "apply", args.repeat, progress)
    base, big = results["rounds"]
    table = Table(title=f"One scheduling round ({machine}); ratio = "
                        f"{big['jobs']}x{big['nodes']} / {base['jobs']}x{base['nodes']}, admit")
    table.add_column("step")
    table.add_column(f"{base['jobs']}x{base['nodes']} admit", justify="right")
    for kind in KINDS:
        table.add_column(f"{big['jobs']}x{big['nodes']} {kind}", justify="right")
    table.add_column("ratio (admit)", justify="right")
    for step in (*ROUND_STEPS, "total"):
        def ms(scale: dict[str, Any], kind: str, step: str = step) -> float:
            summary = scale[kind]
            return 1000 * float(summary["total"] if step == "total"
                                else summary["seconds"][step])
        a, b = ms(base, "admit"), ms(big, "admit")
        table.add_row(step, f"{a:.0f} ms", *(f"{ms(big, k):.0f} ms" for k in KINDS),
                      f"{b / a:.1f}x" if a >= 1 else "-")
    table.add_row("statuses written", str(base["admit"]["patched"]),
                  *(str(big[k]["patched"]) for k in KINDS), "")
    table.add_row("jobs rolled", str(base["admit"]["rolled"]),
                  *(str(big[k]["rolled"]) for k in KINDS), "")
    table.add_row("pods created after admit", f"{base['pods_created_seconds']:.1f} s",
                  f"{big['pods_created_seconds']:.1f} s", "", "", "")
    console.print(table)
    apply = results["apply"]
    latency = Table(title=f"kubectl apply -> first running pod, median of {args.repeat}")
    latency.add_column("what")
    latency.add_column("seconds", justify="right")
    latency.add_column("ratio", justify="right")
    latency.add_row("bare Pod (baseline)", f"{apply['pod_median']:.2f}", "1.0x")
    latency.add_row("TrainingJob via the operator", f"{apply['job_median']:.2f}",
                    f"{apply['job_median'] / apply['pod_median']:.1f}x"
                    if apply["pod_median"] > 0 else "-")
    console.print(latency)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "operator.json").write_text(json.dumps(results, indent=2))
    plot = _plot(results)
    console.print(f"numbers: {OUT / 'operator.json'}" + (f"; plot: {plot}" if plot else ""))
    return 0 if math.isfinite(big["admit"]["total"]) else 1


if __name__ == "__main__":
    sys.exit(main())
