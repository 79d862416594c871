"""Process lifecycle: SIGTERM ends a task within seconds, never in the middle of a write.

The training loop runs in a helper thread; the main thread only waits, so that it can
run the signal handler at once even while training blocks in a collective or an RPC. On
SIGTERM (or SIGINT) the task exits 0 immediately, abandoning the current step: the last
checkpoint is intact because files are only ever renamed into place. Only a checkpoint
being written (`critical`) delays the exit until it is complete, bounded by a timer.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

GRACE_S = 10.0  # a checkpoint write that takes longer than this is abandoned too
_START = time.monotonic()
_who = "optimus_worker"


def set_identity(who: str) -> None:
    global _who, _START
    _who = who
    _START = time.monotonic()


def log(message: str) -> None:
    """One line on stderr, with the task's identity and seconds since it started."""
    print(f"[{_who} +{time.monotonic() - _START:.2f}s] {message}", file=sys.stderr, flush=True)


#: the most of a termination message the kubelet keeps (it truncates at 4096 bytes)
TERMINATION_MESSAGE_LIMIT = 4000


def write_termination_message(message: str, path: str | None = None) -> None:
    """Say why this process fails where Kubernetes shows it: the container's termination
    message file (`contract.ENV_TERMINATION_LOG`, which the operator sets to the container's
    terminationMessagePath), which the kubelet copies into the pod's status and the
    operator into the job's Failed condition and event. Without the variable (a process
    run outside a pod) nothing is written; a file that cannot be written is skipped."""
    from optimus_worker import contract

    target = path or os.environ.get(contract.ENV_TERMINATION_LOG)
    if not target:
        return
    text = message.strip()
    if len(text) > TERMINATION_MESSAGE_LIMIT:  # keep the end: the cause is last
        text = "..." + text[-TERMINATION_MESSAGE_LIMIT:]
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    except OSError:
        pass


def failure_summary(exc: BaseException) -> str:
    """One line for a termination message: the exception and where it was raised."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def hard_exit(code: int) -> None:
    """Leave now, without torch's RPC/collective shutdown handshakes (peers may be gone)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Lifecycle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._critical = 0
        self.terminating = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            self.terminating = True
            busy = self._critical > 0
        if not busy:
            hard_exit(0)
        timer = threading.Timer(GRACE_S, hard_exit, args=(0,))
        timer.daemon = True
        timer.start()

    @contextmanager
    def critical(self) -> Iterator[None]:
        with self._lock:
            self._critical += 1
        try:
            yield
        finally:
            with self._lock:
                self._critical -= 1
                leave = self.terminating and self._critical == 0
            if leave:
                hard_exit(0)

    def run(self, body: Callable[[], None]) -> int:
        """Run `body` in a thread while the main thread stays free for signals."""
        errors: list[BaseException] = []

        def target() -> None:
            try:
                body()
            except BaseException as exc:
                errors.append(exc)
                import traceback

                traceback.print_exc()
                write_termination_message(failure_summary(exc))

        thread = threading.Thread(target=target, name="train", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
        return 1 if errors else 0
