"""benchmarks/models.py: its data lookup and its refusal to run without the data."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_loader import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "models.py"


def _load() -> ModuleType:
    return load_script(SCRIPT, "benchmark_models")


def test_missing_data_is_a_clear_nonzero_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPTIMUS_SHARED_DATA", str(tmp_path))
    benchmark = _load()
    assert benchmark.main(["--seeds", "1"]) == 2
    out = capsys.readouterr().out
    assert "OPTIMUS_SHARED_DATA" in out and "measured.csv" in out


def test_failing_rows_are_filtered_and_reported(tmp_path: Path) -> None:
    measured = tmp_path / "ps-speed" / "measured.csv"
    measured.parent.mkdir()
    rows = [f"m,dist_sync,10,{p},{w},{100 + p},x,0,0" for p in (1, 2, 3) for w in (1, 2, 3)]
    rows += ["m,dist_sync,10,4,4,0,x,0,0", "m,dist_sync,10,4,5,5,x,0,0"]
    measured.write_text(
        "model,mode,batch_size,ps,workers,samples_per_sec,worker_speeds,ps_cpu,worker_cpu\n"
        + "\n".join(rows) + "\n"
    )
    kept, failing = _load().load_measurements(measured)
    assert len(kept["m"]) == 9
    assert sorted(why for _, why in failing) == ["< 10% of median", "zero speed"]
