"""The Grafana dashboards (charts/optimus/dashboards/*.json): their shape (stable uid, a
$datasource variable, $__rate_interval in every rate, a $job variable on the job view), the
panels the design asks for, and that every series a panel charts is exported by the operator
(optimus.metrics.names) or the workers (optimus_worker.contract)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from e2e.dashboards import (
    exported_series,
    invalid_queries,
    load_dashboards,
    metric_names,
    panel_queries,
    panels,
    panels_without_series,
    substitute,
    template_variables,
    variable_query,
    variables_missing,
)

DASHBOARDS = load_dashboards()
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|deriv|\w+_over_time)\s*\(")
RANGES = re.compile(r"\[([^\]]*)\]")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {
    "optimus-cluster": {"GPUs allocated vs free", "Jobs by phase", "Resizes",
                        "Scheduling round duration by step (p90)"},
    "optimus-job": {"Loss: observed and fitted", "Loss per epoch",
                    "Epochs: done and predicted convergence", "Speed vs workers",
                    "Speed: measured and model", "PS and workers", "ETA",
                    "Step time: compute vs communication"},
}


def test_there_is_a_cluster_and_a_job_dashboard() -> None:
    assert {dashboard["uid"] for dashboard in DASHBOARDS.values()} == set(REQUIRED_PANELS)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_shape(name: str) -> None:
    dashboard: dict[str, Any] = DASHBOARDS[name]
    assert dashboard["uid"] == name.removesuffix(".json"), "the uid is stable: the file name"
    assert dashboard.get("id") is None, "no instance-specific id"
    assert dashboard["title"].startswith("Optimus / ")
    variables = template_variables(dashboard)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel.get("description"), f"{panel['title']} explains itself"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    titles = {panel["title"] for panel in panels(dashboard)}
    assert REQUIRED_PANELS[dashboard["uid"]] <= titles


def test_job_dashboard_selects_a_job_and_every_query_filters_on_it() -> None:
    dashboard = DASHBOARDS["optimus-job.json"]
    variables = template_variables(dashboard)
    assert variable_query(variables["job"]) == (
        'optimus_worker_epoch_progress{namespace="$namespace"}', "job")
    assert variable_query(variables["namespace"]) == ("optimus_worker_epoch_progress",
                                                      "namespace")
    for query in panel_queries(dashboard):
        for selector in re.findall(r"\w+\{[^}]*\}", query.expr):
            assert 'job="$job"' in selector and 'namespace="$namespace"' in selector, query


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_range_is_the_rate_interval(name: str) -> None:
    for query in panel_queries(DASHBOARDS[name]):
        if RANGE_FUNCTIONS.search(query.expr):
            assert set(RANGES.findall(query.expr)) == {"$__rate_interval"}, query


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_charted_series_is_exported(name: str) -> None:
    known = exported_series()
    dashboard = DASHBOARDS[name]
    for query in panel_queries(dashboard):
        used = metric_names(query.expr)
        assert used, f"{query}: no metric found in {query.expr!r}"
        assert used <= known, f"{query} uses undefined series {sorted(used - known)}"
    for variable in template_variables(dashboard).values():
        parsed = variable_query(variable)
        if parsed is not None:
            assert metric_names(parsed[0]) <= known, variable["name"]


def test_metric_names_skip_functions_labels_and_keywords() -> None:
    expr = ('histogram_quantile(0.9, sum by (step, le) (rate(a_bucket{job="x", le!="1"}'
            '[$__rate_interval]))) / on (job) group_left b_total offset 5m unless c')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert substitute('x{job="$job"}[$__rate_interval]', {"job": "j"}, "30s") == \
        'x{job="j"}[30s]'
    with pytest.raises(ValueError, match="unsubstituted"):
        substitute('x{job="$job"}', {})


def test_live_checks_report_the_panels_and_variables_that_fail() -> None:
    """The helpers e2e runs use against a live Prometheus, here with a stand-in query."""
    values = {"namespace": "ns", "job": "j"}

    def without_fitted_loss(promql: str) -> list[dict[str, Any]]:
        if "rate(" in promql and "[30s]" not in promql:
            raise ValueError("bad range")
        if "optimus_job_fitted_loss" in promql:
            return []
        return [{"metric": {"namespace": "ns", "job": "other"}, "value": [0, "1"]}]

    assert invalid_queries(without_fitted_loss, values) == []
    empty = panels_without_series(without_fitted_loss, values)
    assert empty and all("oss" in title for title in empty)  # the loss panels only
    assert sorted(variables_missing(without_fitted_loss, values)) == [
        "optimus-job: $job does not offer 'j'"]
    assert invalid_queries(without_fitted_loss, values, rate_interval="1m")
