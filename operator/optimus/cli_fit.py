"""`optimus fit speed|loss|store`: fit a job's speed or loss model from a CSV file, or
seed the operator's knowledge store from past measurements (thin edge).

Reads the CSV, turns every row into a typed sample once (bad files raise
optimus.cli.InputError naming the file, the line and the fix: exit code 2), calls the pure
fits of optimus.models, and prints either one JSON object (--json, the stable contract
that outside checks use) or readable tables.

    optimus fit speed --mode sync|async|allreduce --batch-size M --train TRAIN.csv
                      [--predict PRED.csv] [--json]
        TRAIN.csv: ps,workers,speed (steps/s, a step = one mini-batch of one worker, i.e.
        total samples/s divided by the per-worker batch size; extra columns ignored; rows
        with speed 0, failing configurations, are left out of the fit and reported on
        stderr and in "failing_left_out")
        PRED.csv:  ps,workers
        prints {"params": {...}, "predictions": [{"ps": p, "workers": w, "speed": s}, ...]}
    optimus fit loss --csv CURVE.csv [--loss-delta D --window W --max-epochs E] [--json]
        CURVE.csv: epoch,loss (nan/inf losses are accepted and rejected by the fit)
        prints {"params": {...}, "converged_epoch": E, "remaining_epochs": R,
                "confidence": c, ...}
    optimus fit store --speeds SPEEDS.csv [--mode ps-sync] [--batch-size M] [--model NAME]...
                      [--namespace NS] [--name NAME] [--merge CONFIGMAP.json]
        SPEEDS.csv: model,ps,workers,samples_per_sec[,batch_size] (the simulator's speed
        table, read by the same parser: failing measurements dropped and listed on stderr)
        prints the knowledge store's ConfigMap (JSON) for `kubectl apply -f -`: every model's
        measurements pooled as the kind named by the model column, with --mode and the global
        batch (--batch-size, else the table's batch_size column), so that a TrainingJob with
        that spec.modelKind (or task), mode and globalBatchSize starts from them. --merge adds
        them to a store already in the cluster (`kubectl get configmap ... -o json`; - reads
        stdin).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from optimus.cli import InputError
from optimus.models import (
    ConvergenceRule,
    ModelError,
    SpeedParams,
    SpeedSample,
    estimate_convergence,
    fit_loss,
    fit_speed,
    parse_mode,
    predict_speed,
)


@dataclass(frozen=True)
class Column:
    """How to read one CSV column: its name, whether whole numbers, and the lowest value."""

    name: str
    whole: bool = False
    minimum: float | None = None
    above_minimum: bool = False  # True: value must be > minimum, else >= minimum
    allow_non_finite: bool = False
    meaning: str = "a number"
    default: float | None = None  # used when the header lacks the column; None: required
    below_minimum_hint: str = ""  # added to the fix when a value is under the minimum


def read_csv(path: Path, columns: Sequence[Column]) -> list[tuple[int, dict[str, float]]]:
    """(line number, {column: value}) for every data row; InputError on any bad cell."""
    header_hint = ",".join(c.name for c in columns)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError(
            f"{path}: cannot read the file ({error.strerror or error}); "
            "fix: give the path of an existing, readable CSV file"
        ) from error
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text ({error.reason}); fix: save the file as a UTF-8 CSV"
        ) from error
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, float]]] = []
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            missing = [c.name for c in columns if c.name not in header and c.default is None]
            if missing:
                raise InputError(
                    f"{path}:{line}: missing column(s) {', '.join(missing)} in the header "
                    f"({','.join(header)}); fix: the first line must name the columns "
                    f"{header_hint} (extra columns are ignored)"
                )
            continue
        values: dict[str, float] = {}
        for column in columns:
            if column.name not in header and column.default is not None:
                values[column.name] = column.default
                continue
            index = header.index(column.name)
            raw = cells[index].strip() if index < len(cells) else ""
            values[column.name] = _parse_cell(path, line, column, raw)
        rows.append((line, values))
    if header is None:
        raise InputError(
            f"{path}:1: the file is empty; fix: write the header line {header_hint} "
            "and then one row per point"
        )
    if not rows:
        raise InputError(
            f"{path}:2: no data rows after the header; fix: add one row per point under "
            f"the header {header_hint}"
        )
    return rows


def _parse_cell(path: Path, line: int, column: Column, raw: str) -> float:
    where = f"{path}:{line}: column '{column.name}'"
    if not raw:
        raise InputError(f"{where} is empty; fix: write {column.meaning} in every row")
    try:
        value = float(raw)
    except ValueError:
        raise InputError(
            f"{where} is {raw!r}, not a number; fix: write {column.meaning} such as "
            f"{'4' if column.whole else '12.5'}"
        ) from None
    if not math.isfinite(value):
        if column.allow_non_finite:
            return value
        raise InputError(f"{where} is {raw!r}; fix: write {column.meaning} (finite)")
    if column.whole and not value.is_integer():
        raise InputError(f"{where} is {raw!r}; fix: write {column.meaning} (a whole number)")
    if column.minimum is not None and (
        value <= column.minimum if column.above_minimum else value < column.minimum
    ):
        bound = f"> {column.minimum:g}" if column.above_minimum else f">= {column.minimum:g}"
        hint = f", or {column.below_minimum_hint}" if column.below_minimum_hint else ""
        raise InputError(f"{where} is {raw!r}; fix: write {column.meaning} {bound}{hint}")
    return value


def _speed_columns(mode: str, with_speed: bool) -> list[Column]:
    min_ps = 0 if mode == "allreduce" else 1
    columns = [
        Column(
            "ps",
            whole=True,
            minimum=min_ps,
            meaning="a number of parameter servers",
            default=0.0 if mode == "allreduce" else None,  # all-reduce runs no PS
        ),
        Column("workers", whole=True, minimum=1, meaning="a number of workers"),
    ]
    if with_speed:
        columns.append(
            # 0 is allowed here: a real measurement of a failing configuration, which
            # run_speed leaves out of the fit and reports (it is no speed to fit).
            Column("speed", minimum=0, meaning="the speed in steps/s")
        )
    return columns


def speed_report(
    params: SpeedParams, configurations: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """The JSON object `optimus fit speed --json` prints."""
    return {
        "params": {
            "mode": params.mode,
            "batch_size": params.batch_size,
            "batch_scope": params.batch_scope,
            **params.named(),
            "theta": list(params.theta),
        },
        "predictions": [
            {"ps": p, "workers": w, "speed": predict_speed(params, p, w)}
            for p, w in configurations
        ],
    }


def run_speed(args: argparse.Namespace) -> int:
    try:
        mode = parse_mode(args.mode)
    except ModelError as error:
        raise InputError(f"--mode: {error}") from None
    if not (math.isfinite(args.batch_size) and args.batch_size > 0):
        raise InputError(
            f"--batch-size is {args.batch_size:g}; fix: give the per-worker mini-batch size "
            "in samples (> 0)"
        )
    train = read_csv(args.train, _speed_columns(mode, with_speed=True))
    samples = [
        SpeedSample(int(row["ps"]), int(row["workers"]), row["speed"])
        for _, row in train
        if row["speed"] > 0
    ]
    failing = [(line, row) for line, row in train if row["speed"] == 0]
    for line, row in failing:
        print(
            f"optimus fit: {args.train}:{line}: speed 0 at (ps={int(row['ps'])}, "
            f"workers={int(row['workers'])}) is a failing configuration; left out of the fit",
            file=sys.stderr,
        )
    try:
        params = fit_speed(samples, mode, args.batch_size)
    except ModelError as error:
        raise InputError(f"{args.train}: cannot fit the {mode} speed model: {error}") from None
    configurations: list[tuple[int, int]] = []
    if args.predict is not None:
        configurations = [
            (int(row["ps"]), int(row["workers"]))
            for _, row in read_csv(args.predict, _speed_columns(mode, with_speed=False))
        ]
    try:
        report = speed_report(params, configurations)
    except ModelError as error:
        raise InputError(f"{args.predict}: cannot predict: {error}") from None
    report["failing_left_out"] = [
        {"line": line, "ps": int(row["ps"]), "workers": int(row["workers"])}
        for line, row in failing
    ]
    if args.json:
        print(json.dumps(report))
        return 0
    console = Console()
    table = Table(title=f"{mode} speed model fitted on {len(samples)} samples ({args.train})")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for name, value in params.named().items():
        table.add_row(name, f"{value:.6g}")
    table.add_row("batch size M", f"{params.batch_size:g}")
    console.print(table)
    if configurations:
        predictions = Table(title="predicted speed (steps/s, one mini-batch of one worker)")
        for header in ("ps", "workers", "speed"):
            predictions.add_column(header, justify="right")
        for entry in report["predictions"]:
            predictions.add_row(str(entry["ps"]), str(entry["workers"]), f"{entry['speed']:.4g}")
        console.print(predictions)
    return 0


def run_loss(args: argparse.Namespace) -> int:
    try:
        rule = ConvergenceRule(args.loss_delta, args.window, args.max_epochs)
    except ModelError as error:
        raise InputError(f"convergence rule: {error}") from None
    rows = read_csv(
        args.csv,
        [
            Column("epoch", minimum=0, meaning="the epochs done (a number >= 0)"),
            Column("loss", allow_non_finite=True, meaning="the loss at that epoch"),
        ],
    )
    epochs = [row["epoch"] for _, row in rows]
    losses = [row["loss"] for _, row in rows]
    try:
        fit = fit_loss(epochs, losses)
    except ModelError as error:
        raise InputError(f"{args.csv}: cannot fit the loss model: {error}") from None
    epochs_done = max(epochs)
    estimate = estimate_convergence(fit, rule, epochs_done)
    params = {"b0": fit.params.b0, "b1": fit.params.b1, "b2": fit.params.b2}
    report = {
        "params": params,
        "converged_epoch": estimate.converged_epoch,
        "remaining_epochs": estimate.remaining_epochs,
        "confidence": estimate.confidence,
        "epochs_done": epochs_done,
        "points_used": fit.points_used,
        "points_rejected": fit.points_rejected,
        "rmse": fit.rmse,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    table = Table(title=f"loss model l(k) = 1/(b0*k + b1) + b2 fitted on {args.csv}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name in ("b0", "b1", "b2"):
        table.add_row(name, f"{params[name]:.6g}")
    table.add_row("points used / rejected", f"{fit.points_used} / {fit.points_rejected}")
    table.add_row("relative RMSE", f"{fit.rmse:.4f}")
    table.add_row(
        "rule",
        f"drop < {rule.loss_delta:g} over {rule.window} epochs, at most {rule.max_epochs}",
    )
    table.add_row("epochs done", f"{epochs_done:g}")
    table.add_row("converged at epoch", f"{estimate.converged_epoch:g}")
    table.add_row("remaining epochs", f"{estimate.remaining_epochs:g}")
    table.add_row("confidence", f"{estimate.confidence:.2f}")
    Console().print(table)
    return 0


def run_store(args: argparse.Namespace) -> int:
    from optimus.kube.store import DEFAULT_CONFIGMAP, knowledge_configmap, store_from_configmap
    from optimus.round import KnowledgeStore, StoreFormatError, pool_measurements
    from optimus.simulation.inputs import SimulationInputError, parse_speed_table

    try:
        mode = parse_mode(args.mode)
    except ModelError as error:
        raise InputError(f"--mode: {error}") from None
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size is {args.batch_size}; fix: give the jobs' "
                         "spec.globalBatchSize (a whole number >= 1)")
    try:
        table = parse_speed_table(_read_text(args.speeds), str(args.speeds))
    except SimulationInputError as error:
        raise InputError(str(error)) from None
    for dropped in table.dropped:
        print(f"optimus fit store: {args.speeds}:{dropped.row.line}: {dropped.row.model} at "
              f"(ps={dropped.row.ps}, workers={dropped.row.workers}) left out: "
              f"{dropped.reason}", file=sys.stderr)
    models = args.model or sorted(table.rows)
    unknown = [m for m in models if m not in table.rows]
    if unknown:
        raise InputError(f"--model {', '.join(unknown)}: not in {args.speeds}; fix: choose "
                         f"among {', '.join(sorted(table.rows))}")
    store = KnowledgeStore()
    name = args.name or DEFAULT_CONFIGMAP
    if args.merge is not None:
        try:
            store = store_from_configmap(json.loads(_read_text(args.merge)))
        except (json.JSONDecodeError, AttributeError, StoreFormatError) as error:
            raise InputError(f"--merge {args.merge}: not a knowledge store ConfigMap "
                             f"({error}); fix: give `kubectl get configmap {name} -o json`"
                             ) from None
    for model in models:
        batch = args.batch_size or table.batch_size(model)
        if batch is None:
            raise InputError(f"{args.speeds}: {model} has no batch_size column; fix: give "
                             "--batch-size, the jobs' spec.globalBatchSize")
        rows = [(r.ps, r.workers, r.samples_per_sec) for r in table.rows[model]]
        store = pool_measurements(store, model, mode, batch, rows)
        entry = store.get(f"{model}|{mode}|{batch}")
        assert entry is not None
        print(f"optimus fit store: {model}|{mode}|{batch}: {len(entry.samples)} "
              f"configurations, speed model "
              f"{'fitted' if entry.theta is not None else 'not fitted (too few)'}",
              file=sys.stderr)
    print(json.dumps(knowledge_configmap(store, args.namespace, name), indent=2))
    return 0


def _read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the file ({error}); fix: give the path of an "
                         "existing UTF-8 file") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `fit speed` and `fit loss` to the `optimus` command line."""
    fit = subparsers.add_parser("fit", help="fit a job's speed or loss model from a CSV file")
    models = fit.add_subparsers(dest="model", required=True)

    speed = models.add_parser(
        "speed",
        help="fit the resource-speed model f(ps, workers)",
        description="TRAIN.csv columns: ps,workers,speed (steps/s, a step = one mini-batch "
        "of one worker = total samples/s / per-worker batch size). PRED.csv: ps,workers.",
    )
    speed.add_argument(
        "--mode", required=True, help="sync | async | allreduce (or ps-sync, ps-async)"
    )
    speed.add_argument(
        "--batch-size", required=True, type=float, help="per-worker mini-batch size M"
    )
    speed.add_argument("--train", required=True, type=Path, help="CSV: ps,workers,speed")
    speed.add_argument("--predict", type=Path, help="CSV: ps,workers to predict")
    speed.add_argument("--json", action="store_true", help="print one JSON object")
    speed.set_defaults(func=run_speed)

    loss = models.add_parser(
        "loss",
        help="fit the loss curve and estimate the convergence epoch",
        description="CURVE.csv columns: epoch,loss. Converged at the first epoch k where "
        "l(k - window) - l(k) < loss-delta, capped at max-epochs.",
    )
    loss.add_argument("--csv", required=True, type=Path, help="CSV: epoch,loss")
    loss.add_argument("--loss-delta", type=float, default=0.05, help="default 0.05")
    loss.add_argument("--window", type=int, default=10, help="epochs, default 10")
    loss.add_argument("--max-epochs", type=int, default=100, help="default 100")
    loss.add_argument("--json", action="store_true", help="print one JSON object")
    loss.set_defaults(func=run_loss)

    store = models.add_parser(
        "store",
        help="seed the operator's knowledge store (a ConfigMap) from past measurements",
        description="SPEEDS.csv columns: model,ps,workers,samples_per_sec[,batch_size] (the "
        "simulator's speed table). Prints the ConfigMap for `kubectl apply -f -`; jobs whose "
        "spec.modelKind (or task), mode and globalBatchSize match a model start from its "
        "measurements.",
    )
    store.add_argument("--speeds", required=True, type=Path,
                       help="CSV: model,ps,workers,samples_per_sec[,batch_size]")
    store.add_argument("--mode", default="ps-sync",
                       help="the jobs' spec.mode: ps-sync (default), ps-async or allreduce")
    store.add_argument("--batch-size", type=int,
                       help="the jobs' spec.globalBatchSize (default: the batch_size column)")
    store.add_argument("--model", action="append",
                       help="seed only this model (repeatable; default: every model)")
    store.add_argument("--namespace", default="optimus-system",
                       help="the operator's knowledge namespace (default optimus-system)")
    store.add_argument("--name", help="the ConfigMap's name (default optimus-knowledge)")
    store.add_argument("--merge", type=Path,
                       help="a store ConfigMap as JSON to add the measurements to (- : stdin)")
    store.set_defaults(func=run_store)
