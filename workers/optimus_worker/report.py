"""The reporting lines a user's own training script adds: ``optimus_worker.report``.

A TrainingJob with ``spec.command`` runs the user's script instead of the library's loop;
the operator still needs the job's speed and loss to schedule it, and reads them from the
same Prometheus series the library's workers export (`optimus_worker.metrics`), so its
observation step does not care who trained. The script adds a few lines::

    from optimus_worker.report import report

    for epoch in range(start_epoch, epochs):
        for i, (x, y) in enumerate(loader):
            ...                                   # the script's own step
            report(samples=len(x), loss=float(loss), epoch=epoch + (i + 1) / len(loader))

* ``samples``: samples this process trained on in this step (its share of the batch);
* ``loss``: the training loss, best a mean over the last epoch or a running mean (one
  batch's loss is noisy; the operator fits a convergence curve to it per epoch);
* ``epoch``: fractional epochs done since the job began, counting those before a resume
  (the operator ends the job at ``spec.convergence.maxEpochs`` or when the loss converged);
* ``steps``: optimizer steps this call stands for (default 1).

`checkpointed(step)` records the step of a checkpoint just written (optional; dashboards).

Outside a TrainingJob (no ``OPTIMUS_*`` environment) every call does nothing, so the script
still runs as it did. In a pod that runs several processes (``LOCAL_WORLD_SIZE`` g > 1),
only ``LOCAL_RANK`` 0 exports (the pod has one metrics port) and its samples count g
times: the pod's processes are taken to train equal shares. torch-free: it imports only
prometheus_client and the contract.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Final

from optimus_worker import contract
from optimus_worker.metrics import TaskMetrics

_lock = threading.Lock()
_reporter: Reporter | None = None
_disabled = False
#: the fractional epoch is exported with this resolution
EPOCH_DECIMALS: Final = 6


class Reporter:
    """The series of one worker pod, served on its metrics port."""

    def __init__(self, env: contract.PodEnv, *, serve: bool = True) -> None:
        self.env = env
        self.metrics = TaskMetrics(env)
        if serve:
            self.metrics.serve(os.environ.get(contract.ENV_POD_IP) or "0.0.0.0",
                               env.metrics_port)

    def report(self, *, samples: int, loss: float | None = None,
               epoch: float | None = None, steps: int = 1) -> None:
        # every argument is checked before anything counts: a refused report counts nothing
        if samples < 0 or steps < 0:
            raise ValueError(f"report(samples={samples}, steps={steps}): counts are >= 0")
        if epoch is not None and epoch < 0:
            raise ValueError(f"report(epoch={epoch}): epochs done are >= 0")
        self.metrics.samples.inc(samples * self.env.local_world_size)
        self.metrics.steps.inc(steps)
        if epoch is not None:
            self.metrics.epoch.set(round(float(epoch), EPOCH_DECIMALS))
        if loss is not None:
            self.metrics.loss.set(float(loss))

    def checkpointed(self, step: int) -> None:
        self.metrics.checkpoint_step.set(step)


def reporter() -> Reporter | None:
    """This process's reporter, started on first use; None outside a TrainingJob's worker
    pod (and for LOCAL_RANK > 0), where reporting does nothing."""
    global _reporter, _disabled
    with _lock:
        if _reporter is not None or _disabled:
            return _reporter
        try:
            env = contract.parse_env()
        except contract.ContractError as exc:
            _disabled = True
            print(f"optimus_worker.report: not in a TrainingJob pod ({exc}); reporting off",
                  file=sys.stderr)
            return None
        if env.role != "worker" or env.local_rank != 0:
            _disabled = True
            return None
        _reporter = Reporter(env)
        return _reporter


def report(*, samples: int, loss: float | None = None, epoch: float | None = None,
           steps: int = 1) -> None:
    """Count one training step of this process (see the module docstring)."""
    found = reporter()
    if found is not None:
        found.report(samples=samples, loss=loss, epoch=epoch, steps=steps)


def checkpointed(step: int) -> None:
    """Record that a checkpoint of `step` was written."""
    found = reporter()
    if found is not None:
        found.checkpointed(step)
