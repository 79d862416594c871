"""The pause of a resize as the operator sees it: an all-reduce job's worker change made
in place against the same change made by checkpoint-restart, on the local cluster.

Method: the whole stack (e2e.demo.stack: local cluster, CRD, real Prometheus, the operator
as its own process, a 2 s scheduling interval), once with resizing in place on (the
operator's default) and once with it off (OPTIMUS_IN_PLACE_TIMEOUT_SECONDS=0: every resize
is a checkpoint-restart), the same job each time: the library's mlp task, all-reduce, batch
32, one worker. Its worker count is moved 1 -> 2 -> 1 -> ... --resizes times by patching
spec.workers.min/max (the allocation follows within a round). Per resize, what the operator
recorded in status.allocation:
  resize_s  from the decision until the job trained at the new size: by restart, until the
            new generation's first step (Prometheus); in place, until the chief answered
            that it trains at the new size (its first step follows within one step);
  pause_s   the training time lost: by restart the same; in place, the chief's switch at
            the step boundary (the running workers train on while the added pod starts).
Medians over the resizes; the ratio is restart / in place, both from the same run.

Run from the repository root:  .venv/bin/python benchmarks/operator_resize.py [--resizes 4]
                               [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from e2e.demo.stack import OperatorSettings, Stack, StackConfig  # noqa: E402
from e2e.scenarios.helpers import apply_job, job_manifest, wait_until  # noqa: E402

PATHS = {"in_place": "20", "restart": "0"}  # OPTIMUS_IN_PLACE_TIMEOUT_SECONDS


def _allocation(stack: Stack, name: str) -> dict[str, Any]:
    return dict((stack.kubectl.trainingjob(name).get("status") or {}).get("allocation") or {})


def measure(path: str, resizes: int, workdir: Path) -> list[dict[str, Any]]:
    settings = OperatorSettings(interval_seconds=2.0, restart_cost_seconds=2.0,
                                extra_env={"OPTIMUS_IN_PLACE_TIMEOUT_SECONDS": PATHS[path]})
    config = StackConfig(workdir=workdir / path, nodes=1, gpus_per_node=4, operator=settings)
    name = "bench"
    rows = []
    with Stack(config) as stack:
        apply_job(stack.kubectl, job_manifest(
            name, stack.workdir / "checkpoints", max_epochs=500, mode="allreduce",
            ps=(0, 0), workers=(1, 1), batch=32, interval_steps=10))
        wait_until(stack, "the job to run", lambda: _allocation(stack, name).get(
            "runningSince"), timeout=120)
        time.sleep(5)  # past its first steps
        workers = 1
        for _ in range(resizes):
            workers = 3 - workers
            generation = int(_allocation(stack, name).get("generation") or 0)
            stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
                {"spec": {"workers": {"min": workers, "max": workers}}}))
            def measured(generation: int = generation, workers: int = workers
                         ) -> dict[str, Any] | None:
                a = _allocation(stack, name)
                return a if (int(a.get("generation") or 0) > generation
                             and a.get("workers") == workers and a.get("runningSince")
                             and a.get("resizeSeconds") is not None) else None
            done = wait_until(stack, f"the resize to {workers} workers to be measured",
                              measured, timeout=180, interval=0.3)
            rows.append({"to": workers, "kind": done.get("resizeKind"),
                         "resize_s": done.get("resizeSeconds"),
                         "pause_s": done.get("pauseSeconds")})
            time.sleep(3)  # a few steps at the new size
    return rows


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resizes", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="operator-resize-") as tmp:
        runs = {path: measure(path, args.resizes, Path(tmp)) for path in PATHS}
    summary: dict[str, dict[str, Any]] = {path: {"resize_s": _median(rows, "resize_s"),
                      "pause_s": _median(rows, "pause_s"), "resizes": rows}
               for path, rows in runs.items()}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"machine: {platform.machine()}, {platform.system()}, Python "
          f"{platform.python_version()}; all-reduce mlp, 1 <-> 2 workers, {args.resizes} "
          f"resizes per path")
    print("| path | median resize_s (decision -> new size) | median pause_s (training lost) "
          "| per resize (resize_s / pause_s) |")
    print("| --- | ---: | ---: | --- |")
    for path, found in summary.items():
        per = ", ".join(f"{r['resize_s']}/{r['pause_s']}" for r in found["resizes"])
        print(f"| {path} | {found['resize_s']} | {found['pause_s']} | {per} |")
    for key in ("resize_s", "pause_s"):
        in_place, restart = summary["in_place"][key], summary["restart"][key]
        if isinstance(in_place, float) and isinstance(restart, float) and in_place > 0:
            print(f"restart / in place, {key}: {restart / in_place:.1f}x")


if __name__ == "__main__":
    main()
