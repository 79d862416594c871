"""Operator configuration: environment defaults, flags override, errors name the source."""

from __future__ import annotations

from pathlib import Path

import pytest
from optimus.kube.config import ConfigError, OperatorConfig, load_config


def test_defaults_match_the_documented_ones() -> None:
    config, verbose = load_config([], {})
    assert config == OperatorConfig()
    assert (config.interval_seconds, config.restart_cost_seconds, config.metrics_port,
            config.health_port, config.peering, config.resize_timeout_seconds) == (
        60.0, 30.0, 9500, 8080, "optimus", 300.0)
    assert not verbose


def test_environment_then_flags() -> None:
    env = {"OPTIMUS_INTERVAL_SECONDS": "5", "OPTIMUS_NAMESPACES": "a, b,",
           "OPTIMUS_PROMETHEUS_URL": "http://127.0.0.1:9090", "OPTIMUS_PEERING": ""}
    config, _ = load_config(["--interval", "3", "--policy", "drf"], env)
    assert config.interval_seconds == 3.0
    assert config.namespaces == ("a", "b")
    assert config.policy == "drf"
    assert config.peering == ""
    assert config.prometheus_url == "http://127.0.0.1:9090"


@pytest.mark.parametrize(
    ("env", "argv", "names"),
    [
        ({"OPTIMUS_INTERVAL_SECONDS": "soon"}, [], "OPTIMUS_INTERVAL_SECONDS"),
        ({}, ["--interval", "0"], "--interval"),
        ({"OPTIMUS_POLICY": "fifo"}, [], "OPTIMUS_POLICY"),
        ({"OPTIMUS_PROMETHEUS_URL": "prometheus:9090"}, [], "OPTIMUS_PROMETHEUS_URL"),
        ({"OPTIMUS_RESTART_COST_SECONDS": "-1"}, [], "OPTIMUS_RESTART_COST_SECONDS"),
        ({}, ["--resize-timeout", "never"], "--resize-timeout"),
        ({"OPTIMUS_ACCELERATOR_RESOURCE": "gpu"}, [], "OPTIMUS_ACCELERATOR_RESOURCE"),
    ],
)
def test_bad_values_name_their_source(env: dict[str, str], argv: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_config(argv, env)


def test_a_policy_that_needs_what_the_operator_does_not_keep_is_refused() -> None:
    # tiresias orders jobs by attained service and preempts; the operator keeps neither
    with pytest.raises(ConfigError, match=r"tiresias.*attained service and preemption.*"
                                          r"optimus simulate.*optimus, optimus-paper"):
        load_config(["--policy", "tiresias"], env={})


def test_the_accelerator_resource_is_a_setting() -> None:
    assert load_config([], {})[0].accelerator_resource == "nvidia.com/gpu"
    config, _ = load_config(["--accelerator-resource", "amd.com/gpu"], {})
    assert config.accelerator_resource == "amd.com/gpu"


def test_the_knowledge_store_s_configmap_is_a_setting(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from optimus.kube import config as module

    config, _ = load_config(["--knowledge-configmap", "k.v1"],
                            {"OPTIMUS_KNOWLEDGE_NAMESPACE": "ops"})
    assert (config.knowledge_configmap, config.store_namespace) == ("k.v1", "ops")
    assert load_config([], {"OPTIMUS_KNOWLEDGE_CONFIGMAP": ""})[0].knowledge_configmap == ""
    # no namespace given: the operator's own (its service account's), else "default"
    account = tmp_path / "namespace"
    monkeypatch.setattr(module, "SERVICE_ACCOUNT_NAMESPACE", account)
    assert OperatorConfig().store_namespace == "default"
    account.write_text("optimus-system\n")
    assert OperatorConfig().store_namespace == "optimus-system"
    for env, named in (({"OPTIMUS_KNOWLEDGE_CONFIGMAP": "Bad_Name"}, "OPTIMUS_KNOWLEDGE_CONFIGMAP"),
                       ({"OPTIMUS_KNOWLEDGE_NAMESPACE": "a.b"}, "OPTIMUS_KNOWLEDGE_NAMESPACE")):
        with pytest.raises(ConfigError, match=named):
            load_config([], env)
