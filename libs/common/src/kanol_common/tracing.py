"""OpenTelemetry tracing across HTTP, the database and Kafka.

The W3C trace context travels in Kafka record headers (``traceparent``), so a request that
submits an acte and the archive deposit it causes belong to one trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from kanol_common.settings import CommonSettings

_configured = False


def configure_tracing(settings: CommonSettings) -> None:
    """Install a tracer provider once per process; export over OTLP when configured."""
    global _configured
    if _configured:
        return

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    _configured = True


def get_tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """The current trace context as text headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Iterable[tuple[str, bytes]] | Mapping[str, str]) -> Context:
    """The trace context carried by Kafka record headers or any text mapping."""
    if isinstance(headers, Mapping):
        return propagate.extract(dict(headers))
    carrier = {key: value.decode("latin-1") for key, value in headers if value is not None}
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x")
