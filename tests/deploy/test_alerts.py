"""The operator's alerts (charts/optimus/rules/): promtool checks the rules and runs their
unit tests, and every alert the design asks for exists and is tested firing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from e2e.dashboards import ALERTS_FILE, alert_rules, exported_series, metric_names

ALERT_TESTS = ALERTS_FILE.with_name("optimus-alerts.test.yaml")
SCRAPE_CONFIGS = ALERTS_FILE.parent.parent / "prometheus" / "scrape-configs.yaml"
REQUIRED_ALERTS = {
    "OptimusJobStuckPending", "OptimusJobMetricsUnavailable", "OptimusModelFitErrorHigh",
    "OptimusResizeStorm", "OptimusOperatorDown",
}


def test_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(ALERTS_FILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", str(ALERT_TESTS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_with_severity_and_help() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) >= REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if not case["exp_alerts"]}
    names = {rule["alert"] for rule in alert_rules()}
    assert names <= fired, f"alerts never tested firing: {names - fired}"
    assert names <= quiet, f"alerts never tested quiet: {names - quiet}"


def test_alerts_use_only_exported_series() -> None:
    known = exported_series()
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']} uses undefined series {used - known}"


def test_plain_prometheus_scrape_configs_load_with_the_alerts(promtool: str,
                                                              tmp_path: Path) -> None:
    """charts/optimus/prometheus/scrape-configs.yaml (for Prometheus without the operator)
    is valid Prometheus configuration next to the alerts file."""
    jobs = yaml.safe_load(SCRAPE_CONFIGS.read_text())
    assert {job["job_name"] for job in jobs} == {"optimus-training-pods", "optimus-operator"}
    assert all(job["honor_labels"] for job in jobs)
    # Debian's Prometheus is built without Kubernetes service discovery, so promtool does not
    # know kubernetes_sd_configs: check its shape here and let promtool check the rest (the
    # relabelling) with a file_sd stand-in.
    for job in jobs:
        (discovery,) = job.pop("kubernetes_sd_configs")
        assert discovery["role"] in {"pod", "endpoints"}
        assert set(discovery) <= {"role", "namespaces"}
        job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"rule_files": [str(ALERTS_FILE)],
                                      "scrape_configs": jobs}))
    result = subprocess.run([promtool, "check", "config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
