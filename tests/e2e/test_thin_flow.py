"""The thin flow through the real processes: an acte submitted over HTTP reaches the archive.

identity, actes-pes, archive and the prefecture simulator run as their own processes on
PostgreSQL and the session's Kafka broker; the test talks to them only over HTTP, as an
authority's software would, and reads their JSON logs to follow one trace.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from kanol_actes_pes.testing import make_pdf
from tests.e2e.launcher import Platform, acte_form

pytestmark = pytest.mark.e2e

DEPOSIT_TIMEOUT_SECONDS = 60.0


def _json_lines(platform: Platform, name: str) -> list[dict[str, Any]]:
    records = []
    for line in platform.log_lines(name):
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def _wait_for_archive(client: httpx.Client, platform: Platform, acte_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEPOSIT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        response = client.get(f"{platform.archive_url}/v1/archives", params={"acte_id": acte_id})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        if items:
            return items[0]
        time.sleep(0.1)
    logs = {name: platform.log_lines(name)[-20:] for name in platform.processes}
    pytest.fail(f"acte {acte_id} not archived in {DEPOSIT_TIMEOUT_SECONDS} s; logs: {logs}")


def test_an_acte_goes_from_submission_to_the_archive_in_one_trace(platform: Platform) -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{span_id}-01"
    # When other tests of the session have instrumented httpx, it writes the traceparent of
    # the current span over ours: make the caller's trace the current one too.
    caller = NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.SAMPLED))
    )
    pdf = make_pdf(title="Délibération e2e")
    numero = f"E2E_{secrets.token_hex(4).upper()}"

    with httpx.Client(timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {platform.token()}"
        with trace.use_span(caller):
            response = client.post(
                f"{platform.actes_url}/v1/actes",
                files=acte_form(numero, pdf),
                headers={"traceparent": traceparent},
            )
        assert response.status_code == 201, response.text
        acte_id = response.json()["id"]

        summary = _wait_for_archive(client, platform, acte_id)
        archive = client.get(f"{platform.archive_url}/v1/archives/{summary['id']}").json()
        acte = client.get(f"{platform.actes_url}/v1/actes/{acte_id}").json()
        history = client.get(f"{platform.actes_url}/v1/actes/{acte_id}/history").json()

        by_role = {obj["role"]: obj for obj in archive["objects"]}
        stored_pdf = client.get(
            f"{platform.archive_url}/v1/archives/{archive['id']}/objects/"
            f"{by_role['acte']['sha256']}"
        )

    assert acte["state"] == "acknowledged"
    states = [change["state"] for change in history["items"]]
    assert states[-2:] == ["transmitted", "acknowledged"]
    assert archive["acte_id"] == acte_id
    assert archive["identifiant_acte"] == acte["identifiant_acte"]
    assert {"acte", "ar_acte"} <= set(by_role)
    assert by_role["acte"]["sha512"] == hashlib.sha512(pdf).hexdigest()
    assert stored_pdf.content == pdf

    traced = {
        name: [(line.get("event"), line.get("trace_id")) for line in _json_lines(platform, name)]
        for name in ("actes-pes", "archive")
    }
    milestones = [
        ("actes-pes", "acte.submitted"),
        ("actes-pes", "acte.transmitted"),
        ("actes-pes", "acte.acknowledged"),
        ("archive", "archive.deposited"),
    ]
    for name, event in milestones:
        trace_ids = [line_trace for line_event, line_trace in traced[name] if line_event == event]
        assert trace_ids == [trace_id], f"{event} not in the request's trace: {traced}"


def test_a_missing_token_is_refused_with_a_problem(platform: Platform) -> None:
    response = httpx.post(f"{platform.actes_url}/v1/actes", files={"acte": ("a.pdf", b"%PDF-")})

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401
