"""The chart's Grafana dashboards and alerts as data, for the tests that check them.

tests/deploy checks their shape and that every series they use is one the operator
(optimus.metrics.names) or the workers (optimus_worker.contract) export;
e2e/tests/test_dashboards_promql.py runs every panel's PromQL, variables substituted,
against a live Prometheus. Both read the queries through this module.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from optimus.metrics import names as operator_names
from optimus_worker import contract

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "optimus"
DASHBOARDS_DIR = CHART / "dashboards"
ALERTS_FILE = CHART / "rules" / "optimus-alerts.yaml"
# Prometheus makes these for every target itself.
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} ({self.ref_id})"


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of the chart, by file name."""
    return {path.name: json.loads(path.read_text())
            for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(str(dashboard["uid"]), str(panel.get("title", "")),
                       str(target.get("refId", "")), str(target["expr"]))
            for panel in panels(dashboard) for target in panel.get("targets", [])
            if target.get("expr")]


def template_variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in dashboard.get("templating", {}).get("list", [])}


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$")


def variable_query(variable: Mapping[str, Any]) -> tuple[str, str] | None:
    """(series expression, label) of a `label_values(expr, label)` query variable."""
    query = variable.get("query")
    text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
    match = LABEL_VALUES.match(text)
    if variable.get("type") != "query" or match is None:
        return None
    return match["expr"] or "", match["label"]


def substitute(expr: str, values: Mapping[str, str], rate_interval: str = "1m") -> str:
    """The expression Grafana would send: `$__rate_interval` and `$var`/`${var}` replaced."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted variable left in {expr!r}")
    return expr


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of charts/optimus/rules/optimus-alerts.yaml."""
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on",
                       "ignoring", "group_left", "group_right", "inf", "nan", "atan2"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {match[1] for match in _IDENTIFIER.finditer(text)
            if not match[2] and match[1].lower() not in _KEYWORDS}


_NAME_LINE = re.compile(r'^(?P<const>[A-Z_]+): Final = "(?P<name>[a-z_:]+)"\s*#\s*(?P<note>.*)$')


def _series_of(module: ModuleType) -> set[str]:
    """The series names a names module defines: counters get `_total`, histograms their
    `_bucket`/`_sum`/`_count` (the type is stated in each constant's comment)."""
    series: set[str] = set()
    for line in inspect.getsource(module).splitlines():
        match = _NAME_LINE.match(line)
        if match is None or not match["const"].startswith(("OP_", "METRIC_")):
            continue
        name, note = match["name"], match["note"].lower()
        if "histogram" in note:
            series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif "counter" in note:
            series.add(f"{name}_total")
        else:
            series.add(name)
    return series


def exported_series() -> frozenset[str]:
    """Every series name the operator and the workers export, plus Prometheus's own."""
    return frozenset(_series_of(operator_names) | _series_of(contract) | PROMETHEUS_SYNTHETIC)


Query = Callable[[str], list[dict[str, Any]]]  # PromQL -> result (e.g. LocalPrometheus.query)


def all_queries(values: Mapping[str, str], rate_interval: str = "30s"
                ) -> list[tuple[PanelQuery, str]]:
    """Every panel query of every dashboard, as Grafana sends it with these variables."""
    return [(query, substitute(query.expr, values, rate_interval))
            for dashboard in load_dashboards().values() for query in panel_queries(dashboard)]


def invalid_queries(query: Query, values: Mapping[str, str],
                    rate_interval: str = "30s") -> list[str]:
    """Panels whose PromQL Prometheus rejects (`query` raises ValueError), with the error."""
    errors = []
    for panel, promql in all_queries(values, rate_interval):
        try:
            query(promql)
        except ValueError as error:
            errors.append(f"{panel}: {error}")
    return errors


def panels_without_series(query: Query, values: Mapping[str, str],
                          rate_interval: str = "30s") -> list[str]:
    """Panels whose query returns no series for the job in `values` (namespace, job).

    For any e2e run with a job in it: `panels_without_series(prometheus.query,
    {"namespace": ns, "job": name})` should be empty once the job has trained an epoch.
    """
    return [str(panel) for panel, promql in all_queries(values, rate_interval)
            if not query(promql)]


def variables_missing(query: Query, values: Mapping[str, str]) -> list[str]:
    """Template variables whose label_values(...) query does not offer `values[name]`."""
    missing = []
    for dashboard in load_dashboards().values():
        for name, variable in template_variables(dashboard).items():
            parsed = variable_query(variable)
            if parsed is None or name not in values:
                continue
            expr, label = parsed
            offered = {item["metric"].get(label) for item in query(substitute(expr, values))}
            if values[name] not in offered:
                missing.append(f"{dashboard['uid']}: ${name} does not offer {values[name]!r}")
    return missing
