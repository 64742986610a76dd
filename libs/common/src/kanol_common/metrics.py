"""Prometheus metrics every service exposes on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "kanol_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "kanol_http_request_duration_seconds", "HTTP request duration", ["method", "route"]
)
EVENTS_PUBLISHED = Counter(
    "kanol_events_published_total", "Events published from the outbox", ["topic", "type"]
)
EVENTS_CONSUMED = Counter(
    "kanol_events_consumed_total",
    "Events handled by a consumer, by outcome",
    ["group", "type", "outcome"],
)
HANDLER_LATENCY = Histogram(
    "kanol_event_handler_duration_seconds", "Event handler duration", ["group", "type"]
)
OUTBOX_BACKLOG = Gauge("kanol_outbox_backlog", "Outbox rows not yet published")
CONSUMER_LAG = Gauge("kanol_consumer_lag", "Records behind the end of a partition", ["group"])
DLQ_MESSAGES = Counter("kanol_dlq_messages_total", "Messages parked on a DLQ", ["group"])
LEADING = Gauge(
    "kanol_leading",
    "1 while this replica leads the named singular chores (kanol_common.leadership), else 0",
    ["chores"],
)
