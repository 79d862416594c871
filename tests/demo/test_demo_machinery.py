"""The demo's edges that need no cluster: process groups, waits, samples, arguments."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from optimus_worker.net import FREE_PORT_RANGE, free_port

from e2e.demo.procs import ManagedProcess, wait_for
from e2e.demo.run import (
    EMULATED_GPU_SECONDS_PER_SAMPLE,
    QUICK_EMULATED_GPU_SECONDS_PER_SAMPLE,
    gpu_note,
    parse_args,
)
from e2e.demo.samples import DEMO_SAMPLES, load_sample, prepared, write_manifests
from e2e.demo.stack import OperatorSettings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_a_process_stops_its_whole_group(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
              f"'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              f"time.sleep(60)']); open({str(child_pid_file)!r}, 'w').write(str(p.pid)); "
              f"time.sleep(60)")
    process = ManagedProcess("parent", [sys.executable, "-c", script], tmp_path / "log")
    process.start()
    child = int(wait_for("the child's pid", lambda: child_pid_file.read_text(), 20))
    assert process.running and _alive(child)
    process.stop(grace=1)
    # The child ignores SIGTERM and is not the leader: only a group SIGKILL ends it.
    wait_for("the child to be gone", lambda: not _alive(child), 10, interval=0.1)
    assert not process.running and process.returncode == -signal.SIGTERM
    process.stop()  # idempotent


def test_kill_is_a_sigkill_and_the_log_keeps_the_output(tmp_path: Path) -> None:
    process = ManagedProcess("p", [sys.executable, "-c",
                                   "import time; print('hello', flush=True); time.sleep(60)"],
                             tmp_path / "log")
    with process:
        wait_for("output", lambda: "hello" in process.log_tail(), 20, interval=0.1)
        process.kill()
        assert process.returncode == -signal.SIGKILL


def test_wait_for_names_what_it_waited_for() -> None:
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="the impossible"):
        wait_for("the impossible", lambda: False, 0.2, interval=0.05)
    assert time.monotonic() - began < 5
    assert wait_for("a value", lambda: 7, 1) == 7


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    # outside the ephemeral range, where outgoing connections take their ports
    assert FREE_PORT_RANGE[0] <= port <= FREE_PORT_RANGE[1]


@pytest.mark.parametrize("name", DEMO_SAMPLES)
def test_samples_are_prepared_with_their_checkpoints_in_the_workdir(
        name: str, tmp_path: Path) -> None:
    manifest = prepared(load_sample(name), tmp_path / "ckpt", max_epochs=2,
                        overrides={"workers": {"max": 2}})
    checkpoint = manifest["spec"]["checkpoint"]
    assert checkpoint["volume"]["hostPath"]["path"] == str(tmp_path / "ckpt")
    assert checkpoint["mountPath"] == str(tmp_path / "ckpt")
    assert manifest["spec"]["convergence"]["maxEpochs"] == 2
    assert manifest["spec"]["workers"]["max"] == 2
    assert manifest["spec"]["workers"]["template"]  # merged, not replaced
    assert manifest["spec"]["task"] in ("mlp", "cnn", "digits")
    assert load_sample(name)["spec"]["convergence"]["maxEpochs"] != 2  # not mutated
    [path] = write_manifests([manifest], tmp_path / "out")
    assert yaml.safe_load(path.read_text()) == manifest


def test_the_demo_samples_use_the_three_shipped_tasks() -> None:
    tasks = {load_sample(name)["spec"]["task"] for name in DEMO_SAMPLES}
    assert tasks == {"mlp", "cnn", "digits"}


def test_operator_settings_map_to_the_agreed_environment(tmp_path: Path) -> None:
    env = OperatorSettings(interval_seconds=5, restart_cost_seconds=2.5,
                           namespaces=("a", "b")).env(
        kubeconfig=tmp_path / "kc", prometheus_url="http://127.0.0.1:9", metrics_port=1,
        health_port=2)
    assert env == {
        "KUBECONFIG": str(tmp_path / "kc"), "OPTIMUS_PROMETHEUS_URL": "http://127.0.0.1:9",
        "OPTIMUS_INTERVAL_SECONDS": "5", "OPTIMUS_RESTART_COST_SECONDS": "2.5",
        "OPTIMUS_POLICY": "optimus", "OPTIMUS_NAMESPACES": "a,b",
        "OPTIMUS_METRICS_PORT": "1", "OPTIMUS_HEALTH_PORT": "2", "OPTIMUS_PEERING": "",
        "OPTIMUS_SPEED_WARMUP_SECONDS": "5", "OPTIMUS_SPEED_SPAN_SECONDS": "8",
        "OPTIMUS_BIND_ADDRESS": "127.0.0.1",
    }


def test_demo_arguments(tmp_path: Path) -> None:
    quick = parse_args(["--quick", "--workdir", str(tmp_path)])
    assert quick.quick and quick.max_epochs == 2 and quick.interval == 5
    assert quick.workdir == tmp_path.resolve()
    full = parse_args(["--timeout", "60"])
    assert full.timeout == 60 and full.max_epochs is None and full.interval == 10
    with pytest.raises(SystemExit):
        parse_args(["--timeout", "-1"])


def test_the_demo_emulates_its_gpus_unless_told_otherwise(tmp_path: Path) -> None:
    assert parse_args([]).emulated_gpu_seconds_per_sample == EMULATED_GPU_SECONDS_PER_SAMPLE > 0
    quick = parse_args(["--quick"]).emulated_gpu_seconds_per_sample
    assert quick == QUICK_EMULATED_GPU_SECONDS_PER_SAMPLE > 0
    assert parse_args(["--gpu-ms-per-sample", "2.5"]).emulated_gpu_seconds_per_sample == 0.0025
    assert parse_args(["--gpu-ms-per-sample", "0"]).emulated_gpu_seconds_per_sample == 0
    with pytest.raises(SystemExit):
        parse_args(["--gpu-ms-per-sample", "-1"])
    assert gpu_note(0.003, local=True) == "GPUs: emulated, 3 ms per training sample"
    assert "not emulated" in gpu_note(0.0, local=True)
    assert "emulated" not in gpu_note(0.003, local=False)


@pytest.mark.parametrize("name", DEMO_SAMPLES)
def test_the_samples_parse_with_the_operators_own_parser(name: str, tmp_path: Path) -> None:
    from optimus.api import parse_training_job

    job = parse_training_job(prepared(load_sample(name), tmp_path))
    assert job.spec.workers.max > job.spec.workers.min >= 1
    assert job.spec.checkpoint.mount_path == str(tmp_path)
