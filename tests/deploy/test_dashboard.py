"""The operators' Grafana dashboard queries the metrics the services really expose."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.facts import metric_labels
from tests.deploy.k8s import Resource, of_kind

# Labels that Prometheus adds when it scrapes (the PodMonitor's relabeling sets service).
SCRAPE_LABELS = frozenset({"service", "namespace", "pod", "job", "instance", "container"})
# What the architecture promises operators (docs/ARCHITECTURE.md, section 6).
PROMISED = {
    "requests": "kanol_http_requests_total",
    "events published": "kanol_events_published_total",
    "events consumed": "kanol_events_consumed_total",
    "handler latency": "kanol_event_handler_duration_seconds_bucket",
    "outbox backlog": "kanol_outbox_backlog",
    "consumer lag": "kanol_consumer_lag",
    "DLQ size": "kanol_dlq_messages_total",
    "actes by state": "kanol_actes_waiting_for_transmission",
}
# Series of kube-state-metrics that alerts use, with their labels.
KUBE_STATE_SERIES = {"kube_job_status_failed": frozenset({"job_name", "namespace", "reason"})}
_METRIC = re.compile(r"\b(?:kanol|kube)_[a-z0-9_]+")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def dashboard(resources: list[Resource]) -> dict[str, Any]:
    (config_map,) = [
        c
        for c in of_kind(resources, "ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    (text,) = config_map["data"].values()
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return loaded


def expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def series() -> dict[str, frozenset[str]]:
    return metric_labels() | KUBE_STATE_SERIES


def check_expression(expr: str, series: dict[str, frozenset[str]]) -> set[str]:
    """Every metric the PromQL expression names is exposed, with the labels it uses;
    returns the labels it groups by."""
    metrics = set(_METRIC.findall(expr))
    assert metrics, expr
    unknown = metrics - set(series)
    assert not unknown, f"{sorted(unknown)} are exposed by no service: {expr}"
    labels = set().union(*(series[m] for m in metrics)) | SCRAPE_LABELS
    grouped = {label.strip() for group in _BY.findall(expr) for label in group.split(",")}
    matched = {
        matcher.split("=")[0].rstrip("!~").strip()
        for block in _MATCHERS.findall(expr)
        for matcher in block.split(",")
    }
    assert grouped - {""} <= labels, f"{expr}: no label {sorted(grouped - labels)}"
    assert matched - {""} <= labels, f"{expr}: no label {sorted(matched - labels)}"
    return grouped - {""}


def test_every_metric_and_label_queried_exists(
    overlays: dict[str, list[Resource]], series: dict[str, frozenset[str]]
) -> None:
    for resources in overlays.values():
        exprs = expressions(dashboard(resources))
        assert exprs
        for expr in exprs:
            check_expression(expr, series)


def test_alerts_query_real_metrics_and_name_labels_they_keep(
    overlays: dict[str, list[Resource]], series: dict[str, frozenset[str]]
) -> None:
    (rule,) = of_kind(overlays["prod"], "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 5
    for alert in alerts:
        kept = check_expression(alert["expr"], series)
        text = " ".join(alert.get("annotations", {}).values())
        # An annotation can show only a label that the aggregation keeps.
        shown = set(re.findall(r"\$labels\.(\w+)", text))
        assert shown <= kept, f"{alert['alert']}: {sorted(shown - kept)} are aggregated away"
    assert {"kanol_dlq_messages_total", "kanol_consumer_lag", "kanol_outbox_backlog"} <= set(
        _METRIC.findall(" ".join(a["expr"] for a in alerts))
    )


def test_the_dashboard_shows_what_operators_were_promised(
    overlays: dict[str, list[Resource]],
) -> None:
    queried = set(_METRIC.findall(" ".join(expressions(dashboard(overlays["prod"])))))
    missing = {what: metric for what, metric in PROMISED.items() if metric not in queried}
    assert not missing


def test_the_check_knows_the_services_metrics(series: dict[str, frozenset[str]]) -> None:
    # Guards the check itself: the registry read must see metrics of every kind.
    assert series["kanol_http_requests_total"] == {"method", "route", "status"}
    assert "le" in series["kanol_http_request_duration_seconds_bucket"]
    assert series["kanol_consumer_lag"] == {"group"}
    assert "kanol_pes_flows_acquit_overdue" in series
    assert "kanol_no_such_metric" not in series
