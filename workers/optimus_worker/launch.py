"""One process per accelerator of a worker pod: ``python -m optimus_worker.launch CMD...``.

A worker pod holding g accelerators gets ``LOCAL_WORLD_SIZE`` = g and the RANK of its first
process (`optimus_worker.contract`). This starts g copies of the command, process i with
``LOCAL_RANK`` = i and ``RANK`` = the pod's first rank + i (and
``OPTIMUS_LOCAL_PROCESS`` = 1, so that a library worker does not launch again), forwards
SIGTERM and SIGINT to them, and exits with the first failure's code (the others are then
stopped), or 0 when all finish. The library's worker (``python -m optimus_worker``) does
this itself in an all-reduce pod with g > 1; a user's script may run under it (or under
torchrun) the same way. With g = 1 it just runs the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType

from optimus_worker import contract
from optimus_worker.lifecycle import write_termination_message

#: set in the launched processes' environment
ENV_LOCAL_PROCESS = "OPTIMUS_LOCAL_PROCESS"
POLL_S = 0.2
#: after the first failure, how long the other processes have to stop before SIGKILL
STOP_GRACE_S = 10.0


def process_env(environ: Mapping[str, str], pod: contract.PodEnv, local_rank: int
                ) -> dict[str, str]:
    """The environment of the pod's `local_rank`-th process."""
    mine = pod.for_local_rank(local_rank)
    return {**environ, **mine.torch_env(), ENV_LOCAL_PROCESS: "1"}


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one that `launch` started."""
    return bool((os.environ if environ is None else environ).get(ENV_LOCAL_PROCESS))


def run(command: Sequence[str], pod: contract.PodEnv,
        environ: Mapping[str, str] | None = None) -> int:
    """Run g processes of `command`; the exit code the pod should have."""
    environ = dict(os.environ if environ is None else environ)
    processes = [subprocess.Popen(list(command), env=process_env(environ, pod, i))
                 for i in range(pod.local_world_size)]

    def forward(signum: int, frame: FrameType | None) -> None:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        codes = [proc.poll() for proc in processes]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            local_rank, code = failed[0]
            _stop(processes)
            message = (f"optimus_worker.launch: process LOCAL_RANK={local_rank} of "
                       f"{' '.join(command)} exited {code}")
            print(message, file=sys.stderr, flush=True)
            why = pod.termination_log
            if why and not (os.path.exists(why) and os.path.getsize(why)):
                write_termination_message(message, why)  # the process did not say why
            return code if code is not None and code > 0 else 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(POLL_S)


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in processes:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m optimus_worker.launch [--] COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        pod = contract.parse_env()
    except contract.ContractError as exc:
        print(f"optimus_worker.launch: {exc}", file=sys.stderr)
        return 2
    return run(args, pod)


if __name__ == "__main__":
    sys.exit(main())
