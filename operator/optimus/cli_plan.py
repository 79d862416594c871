"""`optimus plan`: one scheduling round, steps 4 and 5, on a cluster written in a file (thin
edge).

Reads a plan input (YAML or JSON: nodes, and jobs with their loss- and speed-model
coefficients; `--example` uses the bundled optimus/scheduling/examples/cluster.yaml),
turns it into job and node views once (optimus.scheduling.plan), allocates with the chosen
policy and places, and prints a table or one JSON object:

    optimus plan [--example | --file PLAN.yaml] [--policy NAME] [--restart-cost S] [--json]
    {"policy": ..., "jobs": [{"id", "ps", "workers", "nodes", "remaining_seconds",
      "remaining_seconds_now", "placed"}...], "unplaceable": [...], "cluster": {...}}
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from optimus.cli import InputError
from optimus.scheduling import (
    POLICY_NAMES,
    Allocation,
    Resources,
    allocate,
    get_policy,
    place,
    policy_traits,
)
from optimus.scheduling.plan import PlanInput, PlanInputError, parse_plan_input

EXAMPLE = "examples/cluster.yaml"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="allocate and place the jobs of a cluster file (one scheduling round)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--example", action="store_true", help="use the bundled example (default)")
    source.add_argument("--file", type=Path, help="a plan input, YAML or JSON")
    parser.add_argument("--policy", choices=POLICY_NAMES, default="optimus")
    parser.add_argument(
        "--restart-cost", type=float, default=None, metavar="SECONDS",
        help="seconds a resize costs a running job (the policies that honour it: optimus; "
        "default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _load(path: Path | None) -> tuple[PlanInput, str]:
    if path is None:
        text = resources.files("optimus.scheduling").joinpath(EXAMPLE).read_text()
        source = f"optimus/scheduling/{EXAMPLE}"
    else:
        try:
            text = path.read_text()
        except OSError as error:
            raise InputError(
                f"{path}: cannot read it ({error.strerror}); give a readable file"
            ) from error
        source = str(path)
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as error:
        raise InputError(
            f"{source}: not valid YAML or JSON ({error}); fix the syntax"
        ) from error
    try:
        return parse_plan_input(data), source
    except PlanInputError as error:
        raise InputError(f"{source}: {error}") from error


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds / 3600:.2f} h"


def run(args: argparse.Namespace) -> int:
    plan, source = _load(args.file)
    options: dict[str, Any] = {}
    if args.restart_cost is not None:
        if not policy_traits(args.policy).honours_restart_cost:
            honour = [n for n in POLICY_NAMES if policy_traits(n).honours_restart_cost]
            raise InputError(f"--restart-cost applies only to the policies that honour a "
                             f"restart cost ({', '.join(honour)}); {args.policy} does not")
        options["restart_cost_seconds"] = args.restart_cost
    try:
        policy = get_policy(args.policy, **options)
        jobs = plan.job_views
        allocations = allocate(jobs, plan.nodes, policy)
        placement = place(allocations, jobs, plan.nodes)
    except ValueError as error:
        raise InputError(f"{source}: {error}") from error
    rows = []
    for planned in plan.jobs:
        job = planned.view
        allocation = allocations[job.id]
        where = placement.jobs.get(job.id)
        now = job.current
        rows.append({
            "id": job.id,
            "mode": planned.mode,
            "ps": allocation.ps,
            "workers": allocation.workers,
            "placed": where is not None,
            "nodes": list(where.nodes) if where is not None else [],
            "remaining_epochs": planned.remaining_epochs,
            "remaining_seconds": _seconds(job.remaining_time, allocation),
            "current": None if now is None else {"ps": now.ps, "workers": now.workers},
            "remaining_seconds_now": None if now is None else _seconds(job.remaining_time, now),
        })
    total = Resources()
    for node in plan.nodes:
        total = total + node.allocatable
    result = {
        "policy": args.policy,
        "source": source,
        "jobs": rows,
        "unplaceable": list(placement.unplaceable),
        "cluster": {
            "nodes": len(plan.nodes),
            "gpu": total.gpu,
            "cpu": total.cpu,
            "memory": total.memory,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return 0
    _print_table(result)
    return 0


def _seconds(remaining_time: Any, allocation: Allocation) -> float | None:
    """Seconds left at this allocation; None (JSON null) when queued or never."""
    if allocation.ps + allocation.workers == 0:
        return None
    seconds = float(remaining_time(allocation.ps, allocation.workers))
    return seconds if math.isfinite(seconds) else None


def _print_table(result: dict[str, Any]) -> None:
    console = Console(width=None if sys.stdout.isatty() else 150)
    cluster = result["cluster"]
    table = Table(
        title=f"optimus plan: policy {result['policy']} on {cluster['nodes']} nodes "
        f"({cluster['gpu']:g} GPUs, {cluster['cpu']:g} CPUs) from {result['source']}",
    )
    for column in ("job", "mode", "PS", "workers", "nodes", "remaining", "now (current)"):
        table.add_column(column, justify="right" if column in ("PS", "workers") else "left")
    for row in result["jobs"]:
        queued = row["ps"] + row["workers"] == 0
        nodes = ", ".join(row["nodes"]) if row["placed"] else (
            "[dim]queued[/dim]" if queued else "[red]unplaceable[/red]"
        )
        now = "-" if row["current"] is None else (
            f"{_hours(row['remaining_seconds_now'])} at "
            f"{row['current']['ps']}/{row['current']['workers']}"
        )
        table.add_row(
            row["id"], row["mode"], str(row["ps"]), str(row["workers"]), nodes,
            "queued" if queued else _hours(row["remaining_seconds"]), now,
        )
    console.print(table)
