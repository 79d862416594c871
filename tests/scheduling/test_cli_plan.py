"""`optimus plan`: the bundled example through every policy, JSON and table output, and
bad input files (exit code 2, a message naming the field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from optimus.cli import main
from optimus.scheduling import POLICY_NAMES

EXAMPLE = Path(__file__).parents[2] / "operator/optimus/scheduling/examples/cluster.yaml"


def _plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_example_plan_with_every_policy(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    result = _plan(capsys, "--example", "--policy", policy)
    example = yaml.safe_load(EXAMPLE.read_text())
    assert [row["id"] for row in result["jobs"]] == [j["id"] for j in example["jobs"]]
    names = {n["name"] for n in example["nodes"]}
    for row in result["jobs"]:
        if row["placed"]:
            assert row["nodes"] and set(row["nodes"]) <= names and row["ps"] + row["workers"] > 0
        assert row["placed"] or row["id"] in result["unplaceable"] or (
            row["ps"] + row["workers"] == 0
        )
        if row["remaining_seconds"] is not None:
            assert row["remaining_seconds"] > 0
    assert result["cluster"]["nodes"] == len(example["nodes"])
    assert result["policy"] == policy


def test_jct_aware_gives_the_nearly_done_job_more_than_the_paper(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours = {r["id"]: r for r in _plan(capsys, "--policy", "optimus")["jobs"]}
    paper = {r["id"]: r for r in _plan(capsys, "--policy", "optimus-paper")["jobs"]}
    assert ours["mnist-almost-done"]["workers"] > paper["mnist-almost-done"]["workers"]


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--example"]) == 0
    out = capsys.readouterr().out
    assert "resnet50-imagenet" in out and "policy optimus" in out


def test_a_custom_file_and_restart_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["jobs"] = data["jobs"][:2]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    result = _plan(capsys, "--file", str(path), "--restart-cost", "0")
    assert len(result["jobs"]) == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("nodes"), "'nodes' must be a non-empty list"),
        (lambda d: d["nodes"][0].update(memory="lots"), "nodes[0].memory: 'lots' is not a"),
        (lambda d: d["nodes"][0].update(cpu="-2"), "nodes[0].cpu: '-2' must be a finite amount"),
        (lambda d: d["jobs"][1]["speed"].pop("t0"), "jobs[1].speed: missing field 't0'"),
        (lambda d: d["jobs"][0].update(mode="sideways"), "jobs[0]: unknown speed mode"),
        (lambda d: d["jobs"][0]["workers"].update(min=5, max=2), "min_workers=5, max_workers=2"),
        (lambda d: d["jobs"][0]["ps"].update(max=1.5), "jobs[0].ps.max: 1.5 must be a whole"),
        (lambda d: d["jobs"][0].update(node_affinity=[{"matchExpressions": [
            {"key": "a", "operator": "Near", "values": ["b"]}]}]),
         "jobs[0].node_affinity[0].matchExpressions[0].operator: 'Near' is not an operator"),
        (lambda d: d["jobs"][0].update(node_affinity=[]), "jobs[0].node_affinity: is empty"),
        (lambda d: d["jobs"][0].update(tolerations=[{"key": "k", "operator": "Maybe"}]),
         "jobs[0].tolerations[0].operator"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, message: str  # type: ignore[no-untyped-def]
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["plan", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_node_affinity_keeps_a_job_on_the_nodes_it_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    job = data["jobs"][0]
    job["node_affinity"] = [{"matchExpressions": [
        {"key": "optimus.dev/accelerator", "operator": "In", "values": ["v100"]}]}]
    data["jobs"] = [job]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    result = _plan(capsys, "--file", str(path))
    (planned,) = result["jobs"]
    v100 = {n["name"] for n in data["nodes"]
            if (n.get("labels") or {}).get("optimus.dev/accelerator") == "v100"}
    assert planned["nodes"] and set(planned["nodes"]) <= v100


def test_unreadable_and_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--file", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [unclosed")
    assert main(["plan", "--file", str(bad)]) == 2
    assert "not valid YAML or JSON" in capsys.readouterr().err
    assert main(["plan", "--policy", "drf", "--restart-cost", "5"]) == 2
    assert "honour a restart cost (optimus); drf does not" in capsys.readouterr().err
