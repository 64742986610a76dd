"""The CloudEvents envelope: Kafka binary mode headers, round trip, undecodable records."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from kanol_common.envelope import CloudEvent, UndecodableEvent, decode, header_map
from kanol_common.testing.delivery import Probe

TENANT = "213502388"


def _traced_span() -> NonRecordingSpan:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return NonRecordingSpan(context)


def test_headers_are_cloudevents_binary_mode_with_trace_context() -> None:
    with trace.use_span(_traced_span()):
        event = CloudEvent.new(
            Probe(probe_id="p1", value=3), source="archive", subject="acte-1", tenant=TENANT
        )

    headers = dict(event.kafka_headers())

    assert set(headers) == {
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_subject",
        "ce_time",
        "ce_tenant",
        "content-type",
        "traceparent",
    }
    assert headers["ce_specversion"] == b"1.0"
    assert uuid.UUID(headers["ce_id"].decode()).version == 7
    assert headers["ce_type"] == b"fr.kanol.testing.probe.recorded.v1"
    assert headers["ce_source"] == b"archive"
    assert headers["ce_subject"] == b"acte-1"
    assert headers["ce_tenant"] == TENANT.encode()
    assert headers["content-type"] == b"application/json"
    assert headers["ce_time"].decode().endswith("Z")
    assert headers["traceparent"] == b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert event.kafka_key() == b"acte-1"


def test_round_trip_gives_the_same_event() -> None:
    event = CloudEvent.new(
        Probe(probe_id="p1", value=3), source="archive", subject="acte-1", tenant=TENANT
    )

    decoded = decode(header_map(event.kafka_headers()), event.kafka_value(), Probe)

    assert decoded == event
    assert decoded.data == Probe(probe_id="p1", value=3)
    assert decoded.time.tzinfo is not None


def test_event_ids_sort_by_creation() -> None:
    ids = [
        CloudEvent.new(Probe(probe_id="p"), source="s", subject="x", tenant=TENANT).id
        for _ in range(50)
    ]

    assert ids == sorted(ids)
    assert len(set(ids)) == 50


def _valid() -> tuple[dict[str, str], bytes]:
    event = CloudEvent.new(Probe(probe_id="p1"), source="s", subject="x", tenant=TENANT)
    return header_map(event.kafka_headers()), event.kafka_value()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, v: (h | {"ce_specversion": "0.3"}, v), "specversion"),
        (lambda h, v: ({k: x for k, x in h.items() if k != "ce_id"}, v), "ce_id"),
        (lambda h, v: ({k: x for k, x in h.items() if k != "ce_subject"}, v), "ce_subject"),
        (lambda h, v: ({k: x for k, x in h.items() if k != "ce_tenant"}, v), "ce_tenant"),
        (lambda h, v: (h | {"ce_id": "not-a-uuid"}, v), "UUID"),
        (lambda h, v: (h | {"ce_time": "yesterday"}, v), "RFC 3339"),
        (lambda h, v: (h | {"content-type": "application/xml"}, v), "content type"),
        (lambda h, v: (h, b"{not json"), "invalid"),
        (lambda h, v: (h, b'{"value": 1}'), "invalid"),
        (lambda h, v: (h, None), "no value"),
        (lambda h, v: (h | {"ce_type": "fr.kanol.testing.other.v1"}, v), "is not"),
    ],
)
def test_undecodable_records_are_refused(change, reason) -> None:  # type: ignore[no-untyped-def]
    headers, value = _valid()
    headers, value = change(headers, value)

    with pytest.raises(UndecodableEvent, match=reason):
        decode(headers, value, Probe)


def test_header_that_is_not_utf8_is_undecodable() -> None:
    with pytest.raises(UndecodableEvent):
        header_map([("ce_id", b"\xff\xfe")])


def test_unknown_type_without_a_class_is_undecodable() -> None:
    headers, value = _valid()

    # Probe is kept out of the published catalog, so only its class can decode it.
    with pytest.raises(UndecodableEvent, match="unknown event type"):
        decode(headers, value)


def test_an_event_needs_subject_and_tenant() -> None:
    with pytest.raises(ValueError, match="subject"):
        CloudEvent.new(Probe(probe_id="p"), source="s", subject="", tenant=TENANT)
    with pytest.raises(ValueError, match="tenant"):
        CloudEvent.new(Probe(probe_id="p"), source="s", subject="x", tenant="")
