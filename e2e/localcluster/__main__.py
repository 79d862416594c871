"""`python -m e2e.localcluster up --nodes 4 --gpus-per-node 4`: start a local cluster, print
its kubeconfig path (first line of stdout), run until SIGINT/SIGTERM, then stop all pods."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .cluster import LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.localcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster and run until interrupted")
    up.add_argument("--nodes", type=int, default=4)
    up.add_argument("--gpus-per-node", type=int, default=4)
    up.add_argument("--cpus-per-node", type=int, default=8)
    up.add_argument("--memory-per-node", default="32Gi")
    up.add_argument("--port", type=int, default=0)
    up.add_argument("--workdir", default=None)
    up.add_argument("--emulated-gpu-seconds-per-sample", type=float, default=0.0,
                    help="emulate each GPU's time per training sample in the workers that "
                    "hold one (seconds, e.g. 0.001; default 0: off)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.gpus_per_node < 0 or args.cpus_per_node < 1:
        parser.error("--nodes and --cpus-per-node must be at least 1, --gpus-per-node >= 0")
    if not args.emulated_gpu_seconds_per_sample >= 0:
        parser.error("--emulated-gpu-seconds-per-sample must be >= 0 (0: no emulation)")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cluster = LocalCluster(nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                           cpus_per_node=args.cpus_per_node,
                           memory_per_node=args.memory_per_node, workdir=args.workdir,
                           port=args.port,
                           emulated_gpu_seconds_per_sample=args.emulated_gpu_seconds_per_sample)
    cluster.start()
    try:
        print(cluster.kubeconfig, flush=True)
        print(f"local cluster at {cluster.url}: {args.nodes} nodes x {args.gpus_per_node} GPUs, "
              f"workdir {cluster.workdir}"
              + (f", GPUs emulated at {args.emulated_gpu_seconds_per_sample * 1000:g} ms/sample"
                 if args.emulated_gpu_seconds_per_sample > 0 else ""), file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
