"""``python -m optimus_worker.local``: a whole job as local processes on 127.0.0.1.

What a user without a cluster (and the e2e tests) runs: it starts the PS and worker
processes of one generation with the pod environment of `optimus_worker.contract`, each
on its own free ports, and supervises them:

* a resize (``--resize-after-steps N --to-ps P --to-workers W``, repeatable) follows the
  operator's protocol: ``POST /checkpoint`` to the chief, SIGTERM to the generation, the
  next generation resumes from the newest checkpoint; its cost is timed from the request
  to the new generation's first finished step. Unless ``--no-warm-pool``, the processes of
  the next generation are started ahead in standby (``python -m optimus_worker
  --standby``, torch already loaded), as a cluster keeps images pulled and nodes warm;
* with ``--in-place`` a worker change (the PS count unchanged, every mode) or a PS change
  (the worker count unchanged, PS modes) happens in the running job instead
  (`optimus_worker.membership`): the added tasks start (warm, unless ``--no-warm-pool``)
  and join, ``POST /membership`` switches the job at a step all workers agree on, the
  removed tasks exit 0 after it; timed the same way. If the switch fails, the runner
  falls back to the checkpoint-restart above;
* a task that dies (crash, ``kill -9``) takes its generation down; the runner restarts it
  from the newest checkpoint (at most ``--max-restarts`` times);
* at the end the result comes from the final checkpoint, i.e. from the workers' own
  accounting: steps, epochs, the loss of the last epoch, and the samples seen, repeated
  and skipped according to the ledger the workers kept.

With ``--json`` the last line of output is one JSON object:
``{"steps", "epochs", "final_loss", "samples_seen", "samples_repeated", "samples_skipped",
"resizes": [{"at_step", "from": [p, w], "to": [p, w], "seconds", "path"}], "restarts",
"epoch_losses"}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimus_worker import contract
from optimus_worker.net import free_port

POLL_S = 0.1
STOP_TIMEOUT_S = 10.0


class LocalJobError(RuntimeError):
    """The local job failed beyond what restarts can fix, or timed out."""


class InPlaceFailed(LocalJobError):
    """A resize in place did not happen; the job goes on unchanged (restart instead)."""


@dataclass
class Process:
    role: contract.Role
    rank: int
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int


@dataclass
class LocalJob:
    """One job's processes on this machine, one generation at a time."""

    task: str
    mode: contract.Mode
    num_ps: int
    num_workers: int
    epochs: int
    checkpoint_dir: Path
    global_batch_size: int = 64
    checkpoint_interval: int = contract.DEFAULT_CHECKPOINT_INTERVAL_STEPS
    job: str = "local"
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    generation: int = -1
    processes: list[Process] = field(default_factory=list)
    standby: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    control_port: int = 0
    rendezvous: str = ""
    last_step: int = 0

    def __post_init__(self) -> None:
        self.checkpoint_dir = Path(self.checkpoint_dir)
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="optimus-local-logs-"))
        if self.mode == "allreduce":
            self.num_ps = 0

    # ---- processes -----------------------------------------------------------------------
    def env_for(self, role: contract.Role, rank: int, rendezvous: str, metrics_port: int,
                join_in_place: bool = False) -> dict[str, str]:
        pod = contract.PodEnv(
            job=self.job, namespace="local", role=role, rank=rank, num_ps=self.num_ps,
            num_workers=self.num_workers, mode=self.mode, rendezvous=rendezvous,
            checkpoint_dir=str(self.checkpoint_dir), generation=self.generation,
            metrics_port=metrics_port, control_port=self.control_port,
            checkpoint_interval_steps=self.checkpoint_interval, task=self.task,
            global_batch_size=self.global_batch_size, max_epochs=self.epochs,
        )
        joining = {contract.ENV_JOIN_IN_PLACE: "1"} if join_in_place else {}
        return {**pod.to_env(), contract.ENV_POD_IP: "127.0.0.1", **joining}

    def _base_env(self) -> dict[str, str]:
        return {**os.environ, "OMP_NUM_THREADS": "1", **self.extra_env}

    def prewarm(self, count: int) -> None:
        """Keep `count` standby processes (torch loaded) for the next generation."""
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        while len(self.standby) < count:
            log = self.log_dir / f"standby-{len(list(self.log_dir.glob('standby-*')))}.log"
            with log.open("wb") as out:
                popen = subprocess.Popen(
                    [sys.executable, "-m", "optimus_worker", "--standby"],
                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                    env=self._base_env())
            self.standby.append((popen, log))

    def release_standby(self) -> None:
        for popen, _ in self.standby:
            if popen.stdin is not None:
                popen.stdin.close()  # an empty line: the process exits
        for popen, _ in self.standby:
            try:
                popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        self.standby = []

    def _launch(self, role: contract.Role, rank: int, env: dict[str, str], port: int) -> Process:
        while self.standby:
            popen, log = self.standby.pop(0)
            if popen.poll() is not None or popen.stdin is None:
                continue
            popen.stdin.write((json.dumps(env) + "\n").encode())
            popen.stdin.close()
            return Process(role, rank, popen, log, port)
        assert self.log_dir is not None
        log = self.log_dir / f"g{self.generation}-{role}-{rank}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "optimus_worker"], stdout=out,
                                     stderr=subprocess.STDOUT, env={**self._base_env(), **env})
        return Process(role, rank, popen, log, port)

    def start(self) -> None:
        """Start the next generation with the current PS and worker counts."""
        self.generation += 1
        self.control_port = free_port()
        rendezvous = self.rendezvous = f"127.0.0.1:{free_port()}"
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        roles: list[tuple[contract.Role, int]] = [("worker", r) for r in range(self.num_workers)]
        roles += [("ps", r) for r in range(self.num_ps)]
        self.processes = []
        for role, rank in roles:
            port = free_port()
            self.processes.append(
                self._launch(role, rank, self.env_for(role, rank, rendezvous, port), port))

    def stop(self) -> None:
        """SIGTERM the generation; SIGKILL what is left after STOP_TIMEOUT_S."""
        for proc in self.processes:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.processes:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()

    def process(self, role: contract.Role, rank: int) -> Process:
        return next(p for p in self.processes if p.role == role and p.rank == rank)

    def logs(self, lines: int = 20) -> str:
        out = []
        for proc in self.processes:
            text = proc.log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- g{self.generation} {proc.role}-{proc.rank}: {proc.log.name} "
                       f"(exit {proc.popen.poll()})\n" + "\n".join(text))
        return "\n".join(out)

    # ---- the chief's control endpoint ------------------------------------------------------
    def _call(self, method: str, path: str, timeout: float,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = None if method != "POST" else json.dumps(body).encode() if body else b""
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                         method=method, data=payload)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data

    def status(self) -> dict[str, Any] | None:
        """The chief's /status, or None while it is not serving."""
        try:
            status = self._call("GET", contract.CONTROL_STATUS_PATH, timeout=5)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError):
            return None  # not serving yet, or going away
        self.last_step = max(self.last_step, int(status["step"]))
        return status

    def checkpoint(self, timeout: float = 120.0) -> dict[str, Any]:
        self.wait_until(lambda s: s is not None, timeout)
        return self._call("POST", contract.CONTROL_CHECKPOINT_PATH, timeout=timeout)

    def failed(self) -> list[Process]:
        return [p for p in self.processes if p.popen.poll() not in (None, 0)]

    def done(self) -> bool:
        return all(p.popen.poll() == 0 for p in self.processes)

    def wait_until(self, condition: Any, timeout: float) -> dict[str, Any] | None:
        """Poll /status until `condition(status)` holds; fail if a task dies or time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if condition(status):
                return status
            if self.failed():
                raise LocalJobError("a task died:\n" + self.logs())
            if self.done():
                raise LocalJobError("the job finished before the condition held")
            time.sleep(POLL_S)
        raise LocalJobError(f"timed out after {timeout:.0f}s:\n" + self.logs())

    def wait_step(self, step: int, timeout: float = 300.0) -> dict[str, Any]:
        status = self.wait_until(lambda s: s is not None and s["step"] >= step, timeout)
        assert status is not None
        return status

    # ---- elasticity --------------------------------------------------------------------------
    def resize(self, num_ps: int, num_workers: int, timeout: float = 300.0) -> dict[str, Any]:
        """Checkpoint, stop, restart with (num_ps, num_workers); the resize's record."""
        before = [self.num_ps, self.num_workers]
        started = time.monotonic()
        saved = self.checkpoint()
        self.stop()
        self.num_ps = 0 if self.mode == "allreduce" else num_ps
        self.num_workers = num_workers
        self.start()
        self.wait_until(lambda s: s is not None and s["step"] > saved["step"], timeout)
        return {"at_step": saved["step"], "from": before, "to": [self.num_ps, self.num_workers],
                "seconds": round(time.monotonic() - started, 3), "path": "restart"}

    def resize_in_place(self, num_workers: int, timeout: float = 120.0,
                        join_timeout: float | None = None, start_added: bool = True,
                        num_ps: int | None = None) -> dict[str, Any]:
        """Change the worker count (or, `num_ps`, the PS count) of the running job: start
        the added tasks, announce the membership, let the removed ones exit. The resize's
        record; InPlaceFailed (the job unchanged, the added tasks stopped) when it cannot.
        `join_timeout`: the request's ``timeout_s`` (the chief's default when None);
        `start_added` False announces a growth without starting its tasks (a newcomer that
        never comes)."""
        num_ps = self.num_ps if num_ps is None else num_ps
        allowed = (contract.IN_PLACE_WORKER_CHANGE_MODES if num_ps == self.num_ps
                   else contract.IN_PLACE_PS_CHANGE_MODES)
        if self.mode not in allowed:
            raise InPlaceFailed(f"mode {self.mode} resizes by restart only")
        before = [self.num_ps, self.num_workers]
        started = time.monotonic()
        old_workers, old_ps, old_generation = self.num_workers, self.num_ps, self.generation
        self.num_workers, self.num_ps = num_workers, num_ps
        self.generation += 1
        added = []
        for rank in range(old_workers, num_workers if start_added else old_workers):
            port = free_port()
            added.append(self._launch("worker", rank, self.env_for(
                "worker", rank, self.rendezvous, port, join_in_place=True), port))
        for rank in range(old_ps, num_ps if start_added else old_ps):
            port = free_port()
            added.append(self._launch("ps", rank, self.env_for(
                "ps", rank, self.rendezvous, port, join_in_place=True), port))
        self.processes += added
        try:  # answered once the job trains with the new membership
            body: dict[str, Any] = {"workers": num_workers, "generation": self.generation}
            if num_ps != old_ps:
                body["ps"] = num_ps
            if join_timeout is not None:
                body["timeout_s"] = join_timeout
            answer = self._call("POST", contract.CONTROL_MEMBERSHIP_PATH, timeout, body=body)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
            reason = (f"HTTP {exc.code} {exc.read().decode()}"
                      if isinstance(exc, urllib.error.HTTPError) else exc)
            for proc in added:
                proc.popen.kill()
                proc.popen.wait()
            self.processes = [p for p in self.processes if p not in added]
            self.num_workers, self.num_ps, self.generation = (old_workers, old_ps,
                                                              old_generation)
            raise InPlaceFailed(f"{before} -> {[num_ps, num_workers]} (PS, workers) in place: "
                                f"{reason}") from None
        self.wait_until(lambda s: s is not None and s["step"] > answer["step"], timeout)
        seconds = time.monotonic() - started
        leaving = [p for p in self.processes if p.rank >= (num_workers if p.role == "worker"
                                                            else num_ps)]
        for proc in leaving:
            code = proc.popen.wait(timeout=STOP_TIMEOUT_S)
            if code != 0:
                raise LocalJobError(f"{proc.role} {proc.rank} left with exit code {code}:\n"
                                    + self.logs())
        self.processes = [p for p in self.processes if p not in leaving]
        return {"at_step": answer["step"], "from": before, "to": [self.num_ps, num_workers],
                "seconds": round(seconds, 3), "path": "in-place",
                "switch_s": answer["switch_s"]}

    def run_to_end(self, timeout: float = 600.0, max_restarts: int = 3) -> list[dict[str, Any]]:
        """Supervise until every task exits 0; restart a failed generation from the newest
        checkpoint. The restarts' records: the step lost at and the step resumed from."""
        from optimus_worker.checkpoint import checkpoint_step, latest_checkpoint

        restarts: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not self.done():
            if time.monotonic() > deadline:
                self.stop()
                raise LocalJobError(f"the job did not finish in {timeout:.0f}s:\n" + self.logs())
            if self.failed():
                if len(restarts) >= max_restarts:
                    self.stop()
                    raise LocalJobError("too many failures:\n" + self.logs())
                self.stop()
                path = latest_checkpoint(self.checkpoint_dir)
                resumed = 0 if path is None else checkpoint_step(path)
                restarts.append({"failed_at_step": self.last_step, "resumed_step": resumed,
                                 "lost_steps": max(0, self.last_step - resumed)})
                self.start()
            self.status()
            time.sleep(POLL_S)
        return restarts

    def summary(self) -> dict[str, Any]:
        """The result, from the final checkpoint (the workers' own accounting)."""
        from optimus_worker.checkpoint import load_latest
        from optimus_worker.data import DataSchedule, SampleLedger

        ckpt = load_latest(self.checkpoint_dir)
        if ckpt is None:
            raise LocalJobError(f"no checkpoint in {self.checkpoint_dir}")
        size = int(ckpt.meta["dataset_size"])
        ledger = SampleLedger(size, {e: v.numpy() for e, v in ckpt.ledger.items()})
        schedule = DataSchedule(size, int(ckpt.meta["global_batch_size"]),
                                int(ckpt.meta["seed"]))
        coverage = ledger.coverage(schedule, ckpt.step)
        losses = [s / n for _, (s, n) in sorted(ckpt.losses.items()) if n]
        finished = [s / n for _, (s, n) in sorted(ckpt.losses.items()) if n >= size]
        return {
            "steps": ckpt.step, "epochs": ckpt.epoch,
            "final_loss": finished[-1] if finished else (losses[-1] if losses else None),
            "samples_seen": coverage.seen, "samples_repeated": coverage.repeated,
            "samples_skipped": coverage.skipped, "epoch_losses": losses,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optimus_worker.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mlp", help="example name or module:attr")
    parser.add_argument("--mode", default="ps-sync", choices=contract.MODES)
    parser.add_argument("--ps", type=int, default=1, help="parameter servers (0: allreduce)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--global-batch-size", type=int, default=64)
    parser.add_argument("--checkpoint-dir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--checkpoint-interval", type=int,
                        default=contract.DEFAULT_CHECKPOINT_INTERVAL_STEPS)
    parser.add_argument("--resize-after-steps", type=int, action="append", default=[])
    parser.add_argument("--to-ps", type=int, action="append", default=[])
    parser.add_argument("--to-workers", type=int, action="append", default=[])
    parser.add_argument("--no-warm-pool", dest="warm_pool", action="store_false",
                        help="start every process cold (default: before a planned resize, "
                        "keep the next generation's processes warm, torch loaded)")
    parser.add_argument("--in-place", action="store_true",
                        help="change the worker count in the running job (any mode, the PS "
                        "count unchanged; a failed switch falls back to a restart)")
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the job")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args(argv)
    resizes = args.resize_after_steps
    if not len(resizes) == len(args.to_ps or resizes) == len(args.to_workers):
        parser.error("give --to-workers (and --to-ps, except in allreduce mode) once per "
                     "--resize-after-steps")
    if args.mode != "allreduce" and args.ps < 1:
        parser.error(f"--ps {args.ps}: mode {args.mode} needs at least one PS (--ps 0 means "
                     "--mode allreduce)")
    if args.ps == 0 and args.mode != "allreduce":
        args.mode = "allreduce"
    job = LocalJob(task=args.task, mode=args.mode, num_ps=args.ps, num_workers=args.workers,
                   epochs=args.epochs, global_batch_size=args.global_batch_size,
                   checkpoint_dir=args.checkpoint_dir or Path(tempfile.mkdtemp(
                       prefix="optimus-local-ckpt-")),
                   checkpoint_interval=args.checkpoint_interval)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    records = []

    def next_size(i: int) -> int:
        return (0 if job.mode == "allreduce" else args.to_ps[i]) + args.to_workers[i]

    try:
        job.start()
        log(f"generation 0: {job.num_ps} PS x {job.num_workers} workers, logs in {job.log_dir}")
        for i, at_step in enumerate(resizes):
            if args.warm_pool:
                job.prewarm(next_size(i))
            job.wait_step(at_step, timeout=args.timeout)
            to_ps = args.to_ps[i] if args.to_ps else 0
            record = None
            in_place = (contract.IN_PLACE_WORKER_CHANGE_MODES if to_ps == job.num_ps
                        else contract.IN_PLACE_PS_CHANGE_MODES)
            if args.in_place and job.mode in in_place and (
                    to_ps == job.num_ps or args.to_workers[i] == job.num_workers):
                try:
                    record = job.resize_in_place(args.to_workers[i], timeout=args.timeout,
                                                 num_ps=to_ps if args.to_ps else None)
                except InPlaceFailed as exc:
                    log(f"{exc}; restarting instead")
            if record is None:
                record = job.resize(to_ps, args.to_workers[i], timeout=args.timeout)
            records.append(record)
            log(f"resized {record['from']} -> {record['to']} at step {record['at_step']} "
                f"in {record['seconds']:.2f}s ({record['path']})")
        restarts = job.run_to_end(timeout=args.timeout, max_restarts=args.max_restarts)
    except LocalJobError as exc:
        print(f"optimus_worker.local: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        job.stop()
        job.release_standby()
    result = {**job.summary(), "resizes": records, "restarts": restarts}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
