"""``python -m optimus_worker``: read the pod's role and world from its environment, run it.

The environment follows `optimus_worker.contract` (what the operator sets). ``--task``
overrides ``OPTIMUS_TASK``. A worker whose node emulates its GPU
(``OPTIMUS_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE``) trains the task through
`optimus_worker.emulation`. ``--standby`` first loads torch (and everything a task needs),
then reads the environment as one JSON object from stdin: the local runner keeps such warm
processes ready so that a resize does not wait for Python and torch to start.

A bad environment or task exits 2 with a message naming the variable; a failed run exits
1; a finished run, or SIGTERM, exits 0. A failure's cause also goes to the container's
termination message (`lifecycle.write_termination_message`), where `kubectl describe`
and the TrainingJob's Failed condition show it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

from optimus_worker import contract
from optimus_worker.lifecycle import (
    Lifecycle,
    hard_exit,
    log,
    set_identity,
    write_termination_message,
)

if TYPE_CHECKING:
    from optimus_worker.metrics import TaskMetrics
    from optimus_worker.task import TrainingTask

PS_EXIT_DELAY_S = 0.5  # lets the last answers leave before a PS exits


def run_ps(env: contract.PodEnv, task: TrainingTask, metrics: TaskMetrics) -> None:
    """Serve a shard (and, on PS 0, coordinate) until the chief says the job is done."""
    from optimus_worker import ps
    from optimus_worker.worker import init_rpc

    ps.SERVER = ps.ShardServer(env.mode == "ps-sync", env.num_workers, task.optimizer, metrics,
                               task.lr_schedule)
    if env.rank == 0:
        ps.COORDINATOR = ps.Coordinator(env.num_workers, len(task.dataset()))  # type: ignore[arg-type]
    init_rpc(env)
    log("serving")
    ps.SERVER.finished.wait()
    time.sleep(PS_EXIT_DELAY_S)
    if ps.SERVER.removed:  # a PS change in place: the job goes on, this PS leaves it
        from optimus_worker.worker import leave_rpc

        leave_rpc()
        log("removed from the job in place")
        return
    log("the job is done")


def run_worker(env: contract.PodEnv, task: TrainingTask, metrics: TaskMetrics,
               lifecycle: Lifecycle) -> None:
    if env.mode == "allreduce":
        from optimus_worker.allreduce import AllReduceWorker

        AllReduceWorker(env, task, metrics, lifecycle).run()
        return
    from optimus_worker.worker import PSWorker

    PSWorker(env, task, metrics, lifecycle).run()  # joins the RPC world itself


def warm_up() -> None:
    """Import what every task imports on its first step (torch, RPC, DDP, the optimizers,
    which pull in torch._dynamo), so that a standby process starts training at once."""
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import prometheus_client  # noqa: F401
    import torch
    import torch.distributed.rpc
    from torch.nn.parallel import DistributedDataParallel  # noqa: F401

    import optimus_worker.examples
    import optimus_worker.worker  # noqa: F401

    param = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([param], lr=0.1)


def task_for_role(task: TrainingTask, role: str, environ: Mapping[str, str]) -> TrainingTask:
    """The task this pod trains: a worker's waits the emulated accelerator time its node
    asks for (optimus_worker.emulation); a PS holds no accelerator and never waits."""
    if role != "worker":
        return task
    from optimus_worker.emulation import emulated_task, seconds_per_sample_from_env

    return emulated_task(task, seconds_per_sample_from_env(environ))


def refuse(message: str) -> int:
    """A pod that cannot start: say why on stderr and in the termination message; exit 2."""
    print(f"optimus_worker: {message}", file=sys.stderr)
    write_termination_message(f"optimus_worker: {message}")
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optimus_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", help="module:attr of a TrainingTask or an example name "
                        "(default: $OPTIMUS_TASK)")
    parser.add_argument("--standby", action="store_true",
                        help="warm up, then read the environment as JSON from stdin")
    args = parser.parse_args(argv)
    if args.standby:
        warm_up()
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the runner no longer needs this process
        os.environ.update(json.loads(line))
    try:
        env = contract.parse_env()
    except contract.ContractError as exc:  # before importing torch: a fast, clear failure
        return refuse(str(exc))
    if env.role == "worker" and env.local_world_size > 1 and not args.standby:
        from optimus_worker import launch

        if not launch.launched():  # this pod's first process: start one per accelerator
            return launch.run([sys.executable, "-m", "optimus_worker",
                               *(sys.argv[1:] if argv is None else argv)], env)
    from optimus_worker.task import TaskError, load_task

    reference = args.task or env.task
    if not reference:
        return refuse(f"no task: set {contract.ENV_TASK} (the TrainingJob's spec.task) or "
                      "--task to a shipped example or 'package.module:attr'")
    try:
        task = load_task(reference)
    except TaskError as exc:
        return refuse(str(exc))
    try:
        task = task_for_role(task, env.role, os.environ)
    except contract.ContractError as exc:
        return refuse(str(exc))
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import torch

    from optimus_worker.metrics import TaskMetrics
    from optimus_worker.net import bind_host, configure_transports

    torch.set_num_threads(1)
    local = f".{env.local_rank}" if env.local_world_size > 1 else ""
    set_identity(f"{env.job} g{env.generation} {env.role}-{env.rank}{local}")
    log(f"{env.mode}, {env.num_ps} PS x {env.num_workers} workers, task {task.name}")
    configure_transports()
    lifecycle = Lifecycle()
    lifecycle.install()
    metrics = TaskMetrics(env)
    if env.local_rank == 0:  # the pod's one metrics port
        metrics.serve(bind_host(), env.metrics_port)
    if env.role == "ps":
        code = lifecycle.run(lambda: run_ps(env, task, metrics))
    else:
        code = lifecycle.run(lambda: run_worker(env, task, metrics, lifecycle))
    hard_exit(code)
    return code
