"""The operator's alerts (charts/optimus/rules/): promtool checks the rules and runs their
unit tests, and every alert the design asks for exists and is tested firing."""

from __future__ import annotations

import subprocess

import yaml

from e2e.dashboards import ALERTS_FILE, alert_rules, exported_series, metric_names

ALERT_TESTS = ALERTS_FILE.with_name("optimus-alerts.test.yaml")
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
