"""Child processes that are always stopped with their whole process group.

Every process the demo or the e2e fixtures start (the operator, helpers) runs in a session of
its own, so stopping it signals its process group: whatever it spawned goes too, and an
interrupted demo leaves no orphans. Output goes to a log file, never to the terminal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


def wait_for(description: str, predicate: Callable[[], T], timeout: float,
             interval: float = 0.5) -> T:
    """Call `predicate()` until it returns something truthy or `timeout` seconds pass.

    Returns the truthy value; raises TimeoutError naming what was awaited. Exceptions from
    the predicate count as "not yet" (the thing awaited may still be starting), and the
    last one is chained to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {description}"
            ) from last_error
        time.sleep(interval)


class ManagedProcess:
    """One child process in its own session, logging to `log_path`.

    `stop()` sends SIGTERM to the process group, waits `grace` seconds, then SIGKILLs the
    group; it is idempotent and safe on a process that already exited.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} start {self.argv}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process group (ignoring a group that is already gone)."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def kill(self) -> None:
        """kill -9 the whole group at once (a crash, for fault scenarios)."""
        self.signal_group(signal.SIGKILL)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, then SIGKILL it after `grace` seconds; returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=grace)
        # The leader may have exited while children of its group live on: kill the group.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=10)
        return self._popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
