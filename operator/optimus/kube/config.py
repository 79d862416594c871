"""The operator's configuration: environment variables (OPTIMUS_*), overridden by flags.
Bad values raise ConfigError naming the variable or flag and the fix."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from optimus.api.spec import GPU_RESOURCE
from optimus.metrics.names import DEFAULT_OPERATOR_METRICS_PORT
from optimus.scheduling import OPERATOR_POLICY_NAMES, POLICY_NAMES, policy_traits

#: where a pod's service account says which namespace it runs in
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: a DNS subdomain (a ConfigMap's name) and a DNS label (a namespace)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: an extended resource name: a domain prefix and a name (e.g. nvidia.com/gpu)
_RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class ConfigError(ValueError):
    """A configuration value the operator cannot run with."""


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str = "http://prometheus:9090"
    interval_seconds: float = 60.0
    restart_cost_seconds: float = 30.0
    policy: str = "optimus"
    namespaces: tuple[str, ...] = ()
    metrics_port: int = DEFAULT_OPERATOR_METRICS_PORT
    health_port: int = 8080
    peering: str = "optimus"
    speed_warmup_seconds: float = 10.0
    speed_span_seconds: float = 20.0
    checkpoint_timeout_seconds: float = 30.0
    prometheus_timeout_seconds: float = 5.0
    bind_address: str = "0.0.0.0"
    resize_timeout_seconds: float = 300.0
    accelerator_resource: str = GPU_RESOURCE
    in_place_timeout_seconds: float = 150.0
    #: what a job's speed model starts from before it has measured enough configurations:
    #: "white-box" (seeded from the step split of its first configuration,
    #: optimus.models.speed.prior_from_split) or "none" (probe other configurations)
    speed_prior: str = "white-box"
    #: where the knowledge pooled across jobs is kept (optimus.kube.store); an empty
    #: namespace is the operator's own (its service account's), else "default"
    knowledge_namespace: str = ""
    knowledge_configmap: str = "optimus-knowledge"

    @property
    def store_namespace(self) -> str:
        """The knowledge ConfigMap's namespace: the configured one, else the namespace the
        operator runs in, else "default" (an operator run outside the cluster)."""
        if self.knowledge_namespace:
            return self.knowledge_namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"


SPEED_PRIORS: Final = ("white-box", "none")  # OperatorConfig.speed_prior


#: (field, environment variable, flag, help)
_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("prometheus_url", "OPTIMUS_PROMETHEUS_URL", "--prometheus-url",
     "base URL of the Prometheus that scrapes the workers"),
    ("interval_seconds", "OPTIMUS_INTERVAL_SECONDS", "--interval",
     "seconds between scheduling rounds"),
    ("restart_cost_seconds", "OPTIMUS_RESTART_COST_SECONDS", "--restart-cost",
     "what one resize costs a job, in seconds; a resize must gain more"),
    ("policy", "OPTIMUS_POLICY", "--policy",
     f"allocation policy: {', '.join(OPERATOR_POLICY_NAMES)}"),
    ("namespaces", "OPTIMUS_NAMESPACES", "--namespaces",
     "comma-separated namespaces to watch (empty: all)"),
    ("metrics_port", "OPTIMUS_METRICS_PORT", "--metrics-port",
     "port of the operator's own /metrics (0: off)"),
    ("health_port", "OPTIMUS_HEALTH_PORT", "--health-port",
     "port of the liveness endpoint /healthz (0: off)"),
    ("peering", "OPTIMUS_PEERING", "--peering",
     "kopf peering name, one active operator among replicas (empty: standalone)"),
    ("speed_warmup_seconds", "OPTIMUS_SPEED_WARMUP_SECONDS", "--speed-warmup",
     "seconds of a new generation ignored when measuring its speed"),
    ("speed_span_seconds", "OPTIMUS_SPEED_SPAN_SECONDS", "--speed-span",
     "a speed is measured over at least this many seconds"),
    ("checkpoint_timeout_seconds", "OPTIMUS_CHECKPOINT_TIMEOUT_SECONDS",
     "--checkpoint-timeout", "how long a resize waits for the chief's checkpoint"),
    ("prometheus_timeout_seconds", "OPTIMUS_PROMETHEUS_TIMEOUT_SECONDS",
     "--prometheus-timeout", "timeout of one Prometheus query"),
    ("bind_address", "OPTIMUS_BIND_ADDRESS", "--bind-address",
     "address the metrics and health endpoints listen on"),
    ("resize_timeout_seconds", "OPTIMUS_RESIZE_TIMEOUT_SECONDS", "--resize-timeout",
     "seconds after which a resize whose pods do not all run is reported (ResizeStuck)"),
    ("accelerator_resource", "OPTIMUS_ACCELERATOR_RESOURCE", "--accelerator-resource",
     "the extended resource counted as GPUs in nodes and pods (e.g. amd.com/gpu)"),
    ("knowledge_namespace", "OPTIMUS_KNOWLEDGE_NAMESPACE", "--knowledge-namespace",
     "namespace of the knowledge store's ConfigMap (empty: the operator's own)"),
    ("knowledge_configmap", "OPTIMUS_KNOWLEDGE_CONFIGMAP", "--knowledge-configmap",
     "name of the ConfigMap that keeps the knowledge pooled across jobs (empty: kept in "
     "memory only, lost on restart)"),
    ("in_place_timeout_seconds", "OPTIMUS_IN_PLACE_TIMEOUT_SECONDS", "--in-place-timeout",
     "how long a resize in place may take before the job is restarted instead (0: resize "
     "by checkpoint-restart only)"),
    ("speed_prior", "OPTIMUS_SPEED_PRIOR", "--speed-prior",
     "what a new job's speed model starts from: white-box (its first configuration's step "
     "split) or none (probe other configurations)"),
)


def _convert(name: str, raw: str, source: str) -> Any:
    default = getattr(OperatorConfig, name)
    if name == "namespaces":
        return tuple(n.strip() for n in raw.split(",") if n.strip())
    if isinstance(default, str):
        return raw.strip()
    try:
        value = type(default)(raw)
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is not a {type(default).__name__}; "
                          f"give e.g. {default}") from None
    if value < 0 or (name == "interval_seconds" and value <= 0):
        bound = "> 0" if name == "interval_seconds" else ">= 0"
        raise ConfigError(f"{source}={raw!r} must be {bound}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m optimus.kube",
        description="The Optimus operator: elastic scheduling of TrainingJobs. Every flag "
                    "defaults to its environment variable.",
    )
    for name, env, flag, help_text in _OPTIONS:
        p.add_argument(flag, dest=name, default=None, help=f"{help_text} (env {env}; "
                       f"default {getattr(OperatorConfig, name) or repr('')})")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def load_config(argv: Sequence[str] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[OperatorConfig, bool]:
    """The configuration from `env` (default os.environ) and `argv` flags; and --verbose."""
    env = os.environ if env is None else env
    args = parser().parse_args(argv)
    values: dict[str, Any] = {}
    for name, variable, flag, _ in _OPTIONS:
        flag_value = getattr(args, name)
        if flag_value is not None:
            values[name] = _convert(name, flag_value, flag)
        elif variable in env:
            values[name] = _convert(name, env[variable], variable)
    config = OperatorConfig(**values)
    if config.policy not in POLICY_NAMES:
        raise ConfigError(f"OPTIMUS_POLICY/--policy={config.policy!r}; choose one of "
                          f"{', '.join(OPERATOR_POLICY_NAMES)}")
    if config.policy not in OPERATOR_POLICY_NAMES:
        traits = policy_traits(config.policy)
        needs = " and ".join(n for n, needed in (("attained service", traits.uses_attained_service),
                                                  ("preemption", traits.preempts)) if needed)
        raise ConfigError(f"OPTIMUS_POLICY/--policy={config.policy!r} needs {needs}, which the "
                          f"operator does not provide (it runs in `optimus simulate` only); "
                          f"choose one of {', '.join(OPERATOR_POLICY_NAMES)}")
    if not config.prometheus_url.startswith(("http://", "https://")):
        raise ConfigError(f"OPTIMUS_PROMETHEUS_URL/--prometheus-url={config.prometheus_url!r}"
                          "; give an http(s) URL such as http://prometheus:9090")
    if not _RESOURCE_NAME.match(config.accelerator_resource):
        raise ConfigError(f"OPTIMUS_ACCELERATOR_RESOURCE/--accelerator-resource="
                          f"{config.accelerator_resource!r} is not an extended resource name; "
                          f"give e.g. {GPU_RESOURCE} or amd.com/gpu")
    if config.speed_prior not in SPEED_PRIORS:
        raise ConfigError(f"OPTIMUS_SPEED_PRIOR/--speed-prior={config.speed_prior!r}; choose "
                          f"one of {', '.join(SPEED_PRIORS)}")
    if config.knowledge_configmap and not _DNS_SUBDOMAIN.match(config.knowledge_configmap):
        raise ConfigError(f"OPTIMUS_KNOWLEDGE_CONFIGMAP/--knowledge-configmap="
                          f"{config.knowledge_configmap!r} is not a ConfigMap name; give "
                          f"lower-case letters, digits, '-' and '.', e.g. optimus-knowledge "
                          f"(empty: keep the knowledge in memory only)")
    if config.knowledge_namespace and not _DNS_LABEL.match(config.knowledge_namespace):
        raise ConfigError(f"OPTIMUS_KNOWLEDGE_NAMESPACE/--knowledge-namespace="
                          f"{config.knowledge_namespace!r} is not a namespace name; give "
                          f"e.g. optimus-system (empty: the operator's own)")
    return config, bool(args.verbose)


def describe(config: OperatorConfig) -> str:
    return ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in fields(config))
