"""`python -m optimus.kube`: run the operator (kopf) with the configuration from the
environment and flags (optimus.kube.config)."""

from __future__ import annotations

import asyncio
import logging
import sys

import kopf

from optimus.kube.config import ConfigError, describe, load_config
from optimus.kube.controller import Controller
from optimus.kube.handlers import build_registry


def main(argv: list[str] | None = None) -> int:
    try:
        config, verbose = load_config(argv)
    except ConfigError as error:
        print(f"optimus operator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("optimus.kube").info("configuration: %s", describe(config))
    box: dict[str, Controller] = {}
    registry = build_registry(config, box)
    liveness = (f"http://{config.bind_address}:{config.health_port}/healthz"
                if config.health_port else None)
    asyncio.run(kopf.operator(
        registry=registry,
        # the peering name is set at startup (handlers.startup), where peering is also made
        # optional: without kopf's peering CRD in the cluster the operator runs standalone
        standalone=not config.peering,
        namespaces=list(config.namespaces),
        clusterwide=not config.namespaces,
        liveness_endpoint=liveness,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
