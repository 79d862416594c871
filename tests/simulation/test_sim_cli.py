"""`optimus simulate`: the JSON contract, the report, the plot, and bad traces (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optimus import cli

SPEEDS = "model,ps,workers,samples_per_sec,batch_size\n" + "".join(
    f"net,{p},{w},{100 * w / (1 + 0.2 * w / p):.3f},32\n" for p in range(1, 5) for w in range(1, 5)
) + "net,4,5,0,32\n"  # a failing run: dropped and reported
TRACE = ("job,arrival,model,epochs,dataset_size,ps,workers\n"
         "a,0,net,12,20000,1,2\n"
         "b,0,net,15,30000,2,2\n"
         "c,300,net,12,10000,1,1\n")


@pytest.fixture(autouse=True)
def _only_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("optimus.cli_simulate",))


def _files(tmp_path: Path, trace: str = TRACE) -> list[str]:
    (tmp_path / "t.csv").write_text(trace)
    (tmp_path / "s.csv").write_text(SPEEDS)
    return ["--trace", str(tmp_path / "t.csv"), "--speeds", str(tmp_path / "s.csv"),
            "--nodes", "2", "--gpus-per-node", "4", "--cpus-per-node", "32"]


def test_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", *_files(tmp_path), "--policy", "optimus,drf,fixed", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    document = json.loads(out)  # stdout is the JSON object and nothing else
    assert list(document) == ["policies"]
    assert set(document["policies"]) == {"optimus", "drf", "fixed"}
    for entry in document["policies"].values():
        for key in ("avg_jct", "makespan", "p95_jct", "resizes", "utilization",
                    "median_jct", "jobs_done"):
            assert key in entry
        assert entry["jobs_done"] == 3 and entry["avg_jct"] > 0
        assert 0 < entry["utilization"] <= 1
    assert document["policies"]["optimus"]["avg_jct_vs_optimus"] == 1.0
    assert "━" not in err  # no progress bar with --json


def test_baseline_placement_spreads_the_baselines_only(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    runs = {}
    for placement in ("optimus", "spread"):
        code = cli.main(["simulate", *_files(tmp_path), "--policy", "optimus,fixed", "--json",
                         "--oracle", "--baseline-placement", placement])
        assert code == 0
        runs[placement] = json.loads(capsys.readouterr().out)["policies"]
    assert runs["spread"]["optimus"] == runs["optimus"]["optimus"]
    assert runs["spread"]["fixed"]["jobs_done"] == 3
    # fixed's jobs (1 PS + 2 workers, 2 PS + 2 workers) now span both nodes: slower
    assert runs["spread"]["fixed"]["avg_jct"] > runs["optimus"]["fixed"]["avg_jct"]


def test_compare_oracle_runs_learned_and_oracle_on_the_same_trace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", *_files(tmp_path), "--policy", "optimus,fixed",
                     "--compare-oracle", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(document["policies"]) == {"optimus", "optimus (oracle)", "fixed",
                                         "fixed (oracle)"}
    assert all(entry["jobs_done"] == 3 for entry in document["policies"].values())
    versus = document["learned_vs_oracle"]
    assert set(versus) == {"optimus", "fixed"}
    for name, row in versus.items():
        learned, oracle = document["policies"][name], document["policies"][f"{name} (oracle)"]
        assert row["avg_jct"] == learned["avg_jct"]
        assert row["oracle_avg_jct"] == oracle["avg_jct"]
        assert row["avg_jct_vs_oracle"] == pytest.approx(learned["avg_jct"] / oracle["avg_jct"])
        assert row["resizes_per_job"] == learned["resizes"] / 3
        assert row["oracle_resizes_per_job"] == oracle["resizes"] / 3
    # fixed never looks at a model: the truth changes nothing
    assert versus["fixed"]["avg_jct_vs_oracle"] == 1.0
    # the oracle run is the --oracle run on the same trace
    assert cli.main(["simulate", *_files(tmp_path), "--policy", "optimus", "--oracle",
                     "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["policies"]["optimus"]
    assert alone["avg_jct"] == document["policies"]["optimus (oracle)"]["avg_jct"]
    # and the table shows both rows and the comparison
    assert cli.main(["simulate", *_files(tmp_path), "--policy", "optimus",
                     "--compare-oracle"]) == 0
    out = capsys.readouterr().out
    assert "optimus (oracle)" in out and "learned vs oracle" in out and "resizes / job" in out


def test_report_plot_and_dropped_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "out" / "cdf.png"
    code = cli.main(["simulate", *_files(tmp_path), "--policy", "optimus,tiresias",
                     "--oracle", "--seed", "3", "--plot", str(plot)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "avg JCT" in out and "tiresias" in out and "relative to optimus" in out
    assert "s.csv line 18" in out  # the failing measurement is listed, not hidden
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_workload_runs_without_files(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", "--policy", "fixed", "--json", "--oracle"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["policies"]["fixed"]["jobs_done"] == 60


@pytest.mark.parametrize(
    ("trace", "needle"),
    [
        (TRACE.replace("c,300,net", "c,300,vgg"), "line 4: unknown model 'vgg'"),
        (TRACE.replace("c,300,net", "c,-1,net"), "line 4: arrival is -1"),
        (TRACE.replace("dataset_size,", ""), "line 1: missing column(s) dataset_size"),
        (TRACE.replace("b,0,net,15,", "b,0,net,x,"), "line 3: epochs is 'x', not a number"),
        (TRACE.replace("b,0,net,15,30000,2,2", "b,0,net,15,30000,2,9"),
         "line 3: job b: its requested configuration"),
        ("job,arrival,model,epochs,dataset_size\n", "the trace has no jobs"),
    ],
)
def test_bad_traces_exit_2_naming_file_and_line(tmp_path: Path, trace: str, needle: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", *_files(tmp_path, trace), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert str(tmp_path / "t.csv") in err and needle in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--policy", "optimus,fifo"], "--policy names fifo"),
        (["--interval", "0"], "--interval is 0"),
        (["--restart-cost", "-1"], "--restart-cost is -1"),
        (["--trace", "/nonexistent/t.csv"], "/nonexistent/t.csv: cannot read the trace"),
        (["--oracle", "--compare-oracle"], "--oracle and --compare-oracle exclude"),
        (["--baseline-placement", "kube"],
         "--baseline-placement is 'kube'; use one of optimus, spread"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], needle: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", *args]) == 2
    assert needle in capsys.readouterr().err
