"""The demo as a user runs it: `python -m e2e.demo --quick` runs the three samples to the
end and prints its summary; Ctrl-C (SIGINT) in the middle stops everything it started (no
process it spawned survives it). The runs train one epoch a job (`--max-epochs 1`): the
whole path (apply, schedule, train, finish, summary, stop) is the same at any length."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.demo.samples import DEMO_SAMPLES
from e2e.demo.stack import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _demo(workdir: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, COLUMNS="120", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "e2e.demo", "--workdir", str(workdir),
                             *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_the_quick_demo_runs_every_sample_and_prints_the_summary(tmp_path: Path) -> None:
    demo = _demo(tmp_path, "--quick", "--max-epochs", "1")
    try:
        output, _ = demo.communicate(timeout=400)
    finally:
        demo.kill()
    assert demo.returncode == 0, output[-5000:]
    assert "Summary" in output and "Resizes and why" in output
    for name in DEMO_SAMPLES:
        assert name in output
    assert output.count("Succeeded") >= len(DEMO_SAMPLES)
    print(output[-4000:])


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    demo = _demo(tmp_path, "--quick", "--max-epochs", "1")
    assert demo.stdout is not None
    spawned: set[int] = set()
    began = time.monotonic()
    lines: list[str] = []
    try:
        # Wait until the jobs are applied and their pods run (processes under the demo).
        while time.monotonic() - began < 240:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            spawned |= _descendants(demo.pid)
            if "tiny-cnn" in line and "kubectl apply" in line:
                break
        # ... and their pods start: the operator, Prometheus and a PS and a worker a job
        settle = time.monotonic() + 8
        while time.monotonic() < settle and len(spawned) < 2 + 2 * len(DEMO_SAMPLES):
            time.sleep(0.5)
            spawned |= _descendants(demo.pid)
        assert len(spawned) >= 3, "".join(lines)  # operator, prometheus, pods
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        demo.kill()
    assert demo.returncode == 130, "".join(lines) + output
    assert "stopped everything" in output
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in spawned):
        time.sleep(0.5)
    survivors = [p for p in spawned if _alive(p)]
    assert survivors == [], f"processes left behind: {survivors}"
