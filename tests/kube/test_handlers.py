"""The kopf registry: the handlers the operator relies on are registered under the ids the
code looks them up by (the index's id is the keyword its handlers receive)."""

from __future__ import annotations

from optimus.kube.config import OperatorConfig
from optimus.kube.controller import Controller
from optimus.kube.handlers import INDEX, build_registry


def test_registry_holds_index_timer_event_and_activities() -> None:
    box: dict[str, Controller] = {}
    registry = build_registry(OperatorConfig(interval_seconds=3), box)
    indexers = registry._indexing.get_all_handlers()
    assert [h.id for h in indexers] == [INDEX]
    (timer,) = registry._spawning.get_all_handlers()
    assert getattr(timer, "interval", None) == 1.5  # ticks twice an interval
    watching = registry._watching.get_all_handlers()
    assert [h.id for h in watching] == ["job-event"]
    activities = {h.activity.value for h in registry._activities.get_all_handlers()
                  if h.activity is not None}
    assert {"authentication", "startup", "cleanup"} <= activities
    assert box == {}  # the controller is made at startup, not at import
