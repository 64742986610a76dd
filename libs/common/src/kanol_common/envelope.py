"""CloudEvents 1.0 in Kafka binary content mode: the envelope of every Kanol event.

Attributes travel as ``ce_*`` record headers, the data as the JSON record value, the
aggregate id (the subject) as the record key so that one aggregate's events stay in order.

The binding is written here rather than taken from the ``cloudevents`` package (2.x,
``cloudevents.core.bindings.kafka``), which was looked at: binary mode is a dozen header
names; our attributes are fixed (``subject`` and the ``tenant`` extension required, the data
always one of our Pydantic models); and its ``from_binary`` parses the value into a dict
(that we would validate a second time) and turns the record key into a ``partitionkey``
extension, on the hot path of the relay and of every consumer. It would add a dependency
and a conversion per event for no behaviour we lack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uuid_utils
from pydantic import ValidationError

from kanol_common.events.base import EVENT_TYPES, EventData
from kanol_common.tracing import inject_headers

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_SUBJECT = "ce_subject"
H_TIME = "ce_time"
H_TENANT = "ce_tenant"
H_CONTENT_TYPE = "content-type"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"

KafkaHeaders = Iterable[tuple[str, bytes | None]]


class UndecodableEvent(ValueError):
    """A record that is not a valid Kanol CloudEvent: it goes straight to the DLQ."""


def new_event_id() -> str:
    """A UUIDv7: unique, and sortable by creation time."""
    return str(uuid_utils.uuid7())


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CloudEvents expects."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One event: its CloudEvents attributes, its data and the trace it belongs to."""

    id: str
    type: str
    source: str
    subject: str
    tenant: str
    time: datetime
    data: EventData
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def new(cls, data: EventData, *, source: str, subject: str, tenant: str) -> CloudEvent:
        """A new event for ``data``, carrying the current trace context."""
        if not subject:
            raise ValueError("An event needs a subject (the aggregate id).")
        if not tenant:
            raise ValueError("An event needs a tenant (the organisation's SIREN).")

        trace_headers = inject_headers()
        return cls(
            id=new_event_id(),
            type=data.event_type,
            source=source,
            subject=subject,
            tenant=tenant,
            time=datetime.now(UTC),
            data=data,
            traceparent=trace_headers.get(H_TRACEPARENT),
            tracestate=trace_headers.get(H_TRACESTATE),
        )

    @property
    def topic(self) -> str:
        """The logical topic of the event's domain (without any deployment prefix)."""
        return self.data.topic

    def text_headers(self) -> dict[str, str]:
        """The record headers as text, as the outbox stores them."""
        headers = {
            H_SPECVERSION: SPEC_VERSION,
            H_ID: self.id,
            H_TYPE: self.type,
            H_SOURCE: self.source,
            H_SUBJECT: self.subject,
            H_TIME: format_time(self.time),
            H_TENANT: self.tenant,
            H_CONTENT_TYPE: CONTENT_TYPE,
        }
        if self.traceparent:
            headers[H_TRACEPARENT] = self.traceparent
        if self.tracestate:
            headers[H_TRACESTATE] = self.tracestate
        return headers

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return encode_headers(self.text_headers())

    def kafka_key(self) -> bytes:
        return self.subject.encode()

    def kafka_value(self) -> bytes:
        return self.data.model_dump_json().encode()


def encode_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def header_map(headers: KafkaHeaders) -> dict[str, str]:
    """Record headers as text; a header that is not UTF-8 makes the record undecodable."""
    result: dict[str, str] = {}
    for name, value in headers:
        if value is None:
            continue
        try:
            result[name] = value.decode()
        except UnicodeDecodeError as exc:
            raise UndecodableEvent(f"header {name} is not UTF-8") from exc
    return result


def event_type_of(headers: Mapping[str, str]) -> str | None:
    return headers.get(H_TYPE)


def decode(
    headers: Mapping[str, str], value: bytes | None, data_class: type[EventData] | None = None
) -> CloudEvent:
    """The event of a record, its data validated by ``data_class`` (or the catalog's class).

    Raises :class:`UndecodableEvent` for a missing or invalid attribute, an unknown type when
    no class is given, or data that the class refuses.
    """
    attributes = _required_attributes(headers)
    if data_class is None:
        data_class = EVENT_TYPES.get(attributes[H_TYPE])
    if data_class is None:
        raise UndecodableEvent(f"unknown event type {attributes[H_TYPE]}")
    if data_class.event_type != attributes[H_TYPE]:
        raise UndecodableEvent(f"{attributes[H_TYPE]} is not {data_class.event_type}")
    if value is None:
        raise UndecodableEvent("the record has no value")

    try:
        data = data_class.model_validate_json(value)
    except ValidationError as exc:
        raise UndecodableEvent(f"invalid {data_class.event_type} data: {exc}") from exc

    return CloudEvent(
        id=attributes[H_ID],
        type=attributes[H_TYPE],
        source=attributes[H_SOURCE],
        subject=attributes[H_SUBJECT],
        tenant=attributes[H_TENANT],
        time=_parse_time(attributes[H_TIME]),
        data=data,
        traceparent=headers.get(H_TRACEPARENT),
        tracestate=headers.get(H_TRACESTATE),
    )


_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_REQUIRED = (H_SPECVERSION, H_ID, H_TYPE, H_SOURCE, H_SUBJECT, H_TIME, H_TENANT)


def _required_attributes(headers: Mapping[str, str]) -> Mapping[str, str]:
    for name in _REQUIRED:
        if not headers.get(name):
            missing = [name for name in _REQUIRED if not headers.get(name)]
            raise UndecodableEvent(f"missing headers: {', '.join(missing)}")
    if headers[H_SPECVERSION] != SPEC_VERSION:
        raise UndecodableEvent(f"unsupported specversion {headers[H_SPECVERSION]}")
    content_type = headers.get(H_CONTENT_TYPE, CONTENT_TYPE)
    if content_type != CONTENT_TYPE and content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise UndecodableEvent(f"unsupported content type {content_type}")
    if not _UUID.match(headers[H_ID]):
        raise UndecodableEvent(f"ce_id {headers[H_ID]!r} is not a UUID")
    return headers


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UndecodableEvent(f"ce_time {text!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise UndecodableEvent(f"ce_time {text!r} has no offset")
    return moment


def describe(event: CloudEvent) -> dict[str, Any]:
    """The fields to bind in log lines while an event is handled."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "tenant": event.tenant,
        "subject": event.subject,
    }
