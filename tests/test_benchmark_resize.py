"""benchmarks/resize.py: its --json object has exactly the keys the issue names."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from script_loader import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "resize.py"


def _load() -> ModuleType:
    return load_script(SCRIPT, "benchmark_resize")


def test_report_keys_medians_and_paths_not_built() -> None:
    bench = _load()
    measured = bench.Measured
    results = {
        "allreduce": {"worker_change": {"in_place": measured([0.3, 0.1, 0.2], [0.01]),
                                        "restart": measured([5.0, 7.0])}},
        "ps-sync": {"worker_change": {"in_place": measured(), "restart": measured([4.0])},
                    "ps_change": {"in_place": measured(), "restart": measured([6.0, 8.0])}},
    }
    assert bench.report(results, 0, 2) == {
        "modes": {
            "allreduce": {"worker_change": {"in_place_s": 0.2, "restart_s": 6.0}},
            "ps-sync": {"worker_change": {"in_place_s": None, "restart_s": 4.0},
                        "ps_change": {"in_place_s": None, "restart_s": 7.0}},
        },
        "samples_repeated": 0, "samples_skipped": 2,
    }
