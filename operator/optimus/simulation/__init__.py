"""The trace-driven cluster simulator (pure): it runs steps 3-5 with the operator's own
models, allocator and placer over a simulated cluster and job physics.

    table = parse_speed_table(text)                       # or default_speed_table()
    jobs = parse_trace(text, table)                       # or generate_trace(table)
    surfaces = {m: surface_from_rows(rows) for m, rows in table.rows.items()}
    result = simulate(jobs, surfaces, Cluster.uniform(8, 8, 64), SimulationConfig("optimus"))
    print(summarise(result).avg_jct)

Modules: `inputs` (trace and speed-table parsing), `speeds` (true speed surfaces),
`physics` (network slowdown, loss curves), `engine` (the clock and the physics around the
operator's round, optimus.round), `metrics` (JCT, makespan, utilisation), `generator` (the
default workload).
"""

from optimus.simulation.engine import (
    Cluster,
    JobOutcome,
    NodeSpec,
    SimulationConfig,
    SimulationError,
    SimulationResult,
    check_fits,
    simulate,
)
from optimus.simulation.generator import default_speed_table, default_workload, generate_trace
from optimus.simulation.inputs import (
    SimulationInputError,
    SpeedTable,
    TraceJob,
    parse_speed_table,
    parse_trace,
)
from optimus.simulation.metrics import PolicyMetrics, ratios, summarise
from optimus.simulation.speeds import SpeedSurface, surface_from_rows

__all__ = [
    "Cluster",
    "JobOutcome",
    "NodeSpec",
    "PolicyMetrics",
    "SimulationConfig",
    "SimulationError",
    "SimulationInputError",
    "SimulationResult",
    "SpeedSurface",
    "SpeedTable",
    "TraceJob",
    "check_fits",
    "default_speed_table",
    "default_workload",
    "generate_trace",
    "parse_speed_table",
    "parse_trace",
    "ratios",
    "simulate",
    "summarise",
    "surface_from_rows",
]
