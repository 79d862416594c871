"""Trace and speed-table parsing: typed rows, failing measurements dropped explicitly, and
errors that name the source, the line and the fix."""

from __future__ import annotations

import pytest
from optimus.simulation.inputs import (
    SimulationInputError,
    parse_speed_table,
    parse_trace,
)

SPEEDS = """model,ps,workers,samples_per_sec,batch_size
m,1,1,10,32
m,1,2,18,32
m,2,1,12,32
m,2,2,0,32
m,3,3,30,32
m,2,3,25,32
m,3,2,26,32
m,3,1,14,32
m,1,3,20,32
"""

TRACE = """job,arrival,model,epochs,dataset_size
b,10,m,20,1000
a,10,m,30,2000
c,0,m,25,500
"""


def test_speed_table_drops_non_positive_rows_and_lists_them() -> None:
    table = parse_speed_table(SPEEDS, "s.csv")
    kept = {(row.ps, row.workers) for row in table.rows["m"]}
    assert (2, 2) not in kept and len(kept) == 8
    assert [(d.row.ps, d.row.workers, d.row.line) for d in table.dropped] == [(2, 2, 5)]
    assert "not positive" in table.dropped[0].reason
    assert table.batch_size("m") == 32


def test_speed_table_drops_a_run_far_below_its_neighbours() -> None:
    text = SPEEDS.replace("m,2,2,0,32", "m,2,2,1.5,32")
    table = parse_speed_table(text, "s.csv")
    assert [(d.row.ps, d.row.workers) for d in table.dropped] == [(2, 2)]
    assert "median" in table.dropped[0].reason


def test_speed_table_keeps_a_slow_but_plausible_run() -> None:
    text = SPEEDS.replace("m,2,2,0,32", "m,2,2,9,32")
    assert parse_speed_table(text, "s.csv").dropped == ()


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("model,ps,samples_per_sec\nm,1,3\n", 1, "missing column(s) workers"),
        ("model,ps,workers,samples_per_sec\nm,1,1,fast\n", 2, "not a number"),
        ("model,ps,workers,samples_per_sec\nm,1,1,3\nm,1,0,3\n", 3, "workers"),
        ("model,ps,workers,samples_per_sec\nm,1,1,3\nm,1,1,4\n", 3, "measured twice"),
        ("", 1, "empty"),
    ],
)
def test_speed_table_errors_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(SimulationInputError) as error:
        parse_speed_table(text, "s.csv")
    assert error.value.line == line
    assert f"s.csv line {line}" in str(error.value) and needle in str(error.value)


def test_trace_is_ordered_by_arrival_then_name_with_defaults() -> None:
    jobs = parse_trace(TRACE, parse_speed_table(SPEEDS), "t.csv")
    assert [job.job for job in jobs] == ["c", "a", "b"]
    assert jobs[0].mode == "ps-sync" and jobs[0].loss is None and jobs[0].line == 4


def test_trace_reads_optional_columns() -> None:
    text = ("job,arrival,model,epochs,dataset_size,mode,batch_size,min_workers,max_workers,"
            "gpus_per_worker,loss_b0,loss_b1,loss_b2,ps,workers\n"
            "x,0,m,20,100,ps-async,16,2,6,2,0.1,0.5,0.2,3,4\n")
    (job,) = parse_trace(text, parse_speed_table(SPEEDS), "t.csv")
    assert (job.mode, job.batch_size, job.min_workers, job.max_workers) == ("ps-async", 16, 2, 6)
    assert job.gpus_per_worker == 2 and job.loss is not None and job.loss.b2 == 0.2
    assert (job.ps, job.workers) == (3, 4)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("x,0,nope,20,100", "unknown model 'nope'"),
        ("x,-5,m,20,100", "arrival is -5"),
        ("x,0,m,twenty,100", "epochs is 'twenty', not a number"),
        ("x,0,m,0,100", "epochs must be greater than 0"),
        ("x,0,m,20,nan", "dataset_size is nan"),
        ("a,0,m,20,100", "repeats line 2"),
    ],
)
def test_trace_errors_name_file_line_and_fix(row: str, needle: str) -> None:
    text = "job,arrival,model,epochs,dataset_size\na,0,m,20,100\n" + row + "\n"
    with pytest.raises(SimulationInputError) as error:
        parse_trace(text, parse_speed_table(SPEEDS), "t.csv")
    message = str(error.value)
    assert message.startswith("t.csv line 3: ") and needle in message
    assert ";" in message  # the fix follows the problem


def test_trace_missing_column_and_bad_bounds() -> None:
    speeds = parse_speed_table(SPEEDS)
    with pytest.raises(SimulationInputError, match=r"line 1: missing column.*dataset_size"):
        parse_trace("job,arrival,model,epochs\nx,0,m,3\n", speeds, "t.csv")
    with pytest.raises(SimulationInputError, match="min_workers 4 > max_workers 2"):
        parse_trace("job,arrival,model,epochs,dataset_size,min_workers,max_workers\n"
                    "x,0,m,3,10,4,2\n", speeds, "t.csv")
    with pytest.raises(SimulationInputError, match="allreduce job has no parameter servers"):
        parse_trace("job,arrival,model,epochs,dataset_size,mode,min_ps\n"
                    "x,0,m,3,10,allreduce,2\n", speeds, "t.csv")
    with pytest.raises(SimulationInputError, match="mode is 'sync'"):
        parse_trace("job,arrival,model,epochs,dataset_size,mode\nx,0,m,3,10,sync\n", speeds)
