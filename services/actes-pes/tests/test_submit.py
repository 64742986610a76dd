"""POST /v1/actes refuses bad input with a precise problem, and keeps nothing of it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from kanol_actes_pes.testing import make_pdf
from kanol_common.envelope import decode, header_map
from kanol_common.events.actes import ActeSubmitted
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import read_topic

from .conftest import OTHER_SIREN, SIREN, Actes

PROBLEMS = "https://kanol.fr/problems/"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEMS + slug, body
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_bad_input_is_refused_and_nothing_is_kept(actes: Actes, kafka_bootstrap: str) -> None:
    pdf = make_pdf()
    corrupted = pdf[: len(pdf) // 2]
    forger = TokenFactory(kid=actes.tokens.kid)
    today = date.today()
    actes.settings.max_upload_bytes = 4096

    cases: list[tuple[str, httpx.Response, int, str]] = [
        ("nature 7", await actes.submit(actes.metadata(nature=7)), 422, "acte-nature-invalid"),
        ("nature 0", await actes.submit(actes.metadata(nature=0)), 422, "acte-nature-invalid"),
        (
            "numero_interne lowercase",
            await actes.submit(actes.metadata(numero_interne="2024-45")),
            422,
            "acte-numero-interne-invalid",
        ),
        (
            "numero_interne too long",
            await actes.submit(actes.metadata(numero_interne="A" * 16)),
            422,
            "acte-numero-interne-invalid",
        ),
        (
            "another organisation's SIREN",
            await actes.submit(actes.metadata(siren=OTHER_SIREN)),
            403,
            "acte-other-organisation",
        ),
        (
            "decision in the future",
            await actes.submit(
                actes.metadata(date_decision=(today + timedelta(days=2)).isoformat())
            ),
            422,
            "acte-date-decision-invalid",
        ),
        (
            "decision far too old",
            await actes.submit(actes.metadata(date_decision="1990-01-01")),
            422,
            "acte-date-decision-invalid",
        ),
        (
            "matière of one level",
            await actes.submit(actes.metadata(matiere="7")),
            422,
            "acte-matiere-invalid",
        ),
        (
            "matière malformed",
            await actes.submit(actes.metadata(matiere="7..1")),
            422,
            "acte-matiere-invalid",
        ),
        ("empty objet", await actes.submit(actes.metadata(objet="  ")), 422, "acte-objet-invalid"),
        (
            "objet too long",
            await actes.submit(actes.metadata(objet="x" * 501)),
            422,
            "acte-objet-invalid",
        ),
        (
            "metadata missing a field",
            await actes.submit({"nature": 1}),
            400,
            "acte-metadata-invalid",
        ),
        (
            "not a PDF",
            await actes.submit(document=b"<html>not a pdf</html>"),
            415,
            "acte-document-not-pdf",
        ),
        (
            "PDF sent as text/plain",
            await actes.submit(document=pdf, content_type="text/plain"),
            415,
            "acte-document-not-pdf",
        ),
        (
            "corrupted PDF",
            await actes.submit(document=corrupted),
            422,
            "acte-document-corrupted",
        ),
        (
            "oversize PDF",
            await actes.submit(document=pdf + b"%" * 8192),
            413,
            "acte-document-too-large",
        ),
        (
            "no token",
            await actes.submit(headers={}),
            401,
            "unauthorized",
        ),
        (
            "token signed by another key",
            await actes.submit(
                headers={"Authorization": f"Bearer {forger.issue(SIREN, 'actes:write')}"}
            ),
            401,
            "unauthorized",
        ),
        (
            "token without actes:write",
            await actes.submit(headers=actes.headers(scopes="actes:read")),
            403,
            "forbidden",
        ),
        (
            "not multipart",
            await actes.http.post("/v1/actes", json=actes.metadata(), headers=actes.headers()),
            400,
            "acte-upload-malformed",
        ),
    ]

    for name, response, status, slug in cases:
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert_problem(response, status, slug)
    forged = cases[17][1].json()
    assert "signature" in forged["detail"]

    assert await actes.counts() == {
        "acte": 0,
        "acte_document": 0,
        "acte_state_change": 0,
        "outbox": 0,
        "objects": 0,
    }

    # A good acte after all of them: the topic then holds its event, and only that one.
    actes.settings.max_upload_bytes = 20 * 1024 * 1024
    accepted = await actes.submit()
    assert accepted.status_code == 201, accepted.text
    topic = f"{actes.settings.kafka_topic_prefix}actes.events"
    records = await read_topic(kafka_bootstrap, topic, count=1, wait_seconds=15.0)
    assert len(records) == 1
    # Once that one is out, asking for one more shows there is no other.
    assert len(await read_topic(kafka_bootstrap, topic, count=2, wait_seconds=2.0)) == 1
    event = decode(header_map(records[0].headers), records[0].value)
    assert isinstance(event.data, ActeSubmitted)
    assert event.data.acte_id == accepted.json()["id"]


async def test_submitted_acte_waits_for_transmission(actes: Actes, pdf: bytes) -> None:
    metadata = actes.metadata(numero_interne="2024_45", date_decision="2024-03-12")

    response = await actes.submit(metadata, pdf)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/actes/{body['id']}"
    assert body["state"] == "waiting_for_transmission"
    assert body["identifiant_acte"] == f"035-{SIREN}-20240312-2024_45-DE"
    assert body["nature_code"] == "DE"
    [document] = body["documents"]
    assert document["role"] == "acte"
    assert document["filename"] == f"99_DE-035-{SIREN}-20240312-2024_45-DE-1-1_1.pdf"
    assert document["size"] == len(pdf)
    assert document["uri"] == f"http://actes.test/v1/actes/{body['id']}/documents/acte"

    history = await actes.http.get(f"/v1/actes/{body['id']}/history", headers=actes.headers())
    assert [change["state"] for change in history.json()["items"]] == [
        "posted",
        "waiting_for_transmission",
    ]
    counts = await actes.counts()
    assert (counts["acte"], counts["outbox"], counts["objects"]) == (1, 1, 1)

    again = await actes.submit(actes.metadata(numero_interne="2024_45", date_decision="2024-06-01"))
    assert_problem(again, 409, "acte-numero-interne-taken")
    other_year = await actes.submit(
        actes.metadata(numero_interne="2024_45", date_decision="2023-06-01")
    )
    assert other_year.status_code == 201, other_year.text
    assert (await actes.counts())["acte"] == 2


async def test_an_acte_is_seen_only_by_its_organisation(actes: Actes, pdf: bytes) -> None:
    created = (await actes.submit(document=pdf)).json()
    url = f"/v1/actes/{created['id']}"

    other = actes.headers(siren=OTHER_SIREN, scopes="actes:read")
    assert_problem(await actes.http.get(url, headers=other), 404, "acte-not-found")
    assert_problem(
        await actes.http.get(f"{url}/documents/acte", headers=other), 404, "acte-not-found"
    )

    own = await actes.http.get(f"{url}/documents/acte", headers=actes.headers())
    assert own.status_code == 200
    assert own.content == pdf
    assert own.headers["content-type"] == "application/pdf"

    service = actes.headers(siren=OTHER_SIREN, scopes="documents:read")
    fetched = await actes.http.get(f"{url}/documents/acte", headers=service)
    assert fetched.status_code == 200
    assert fetched.content == pdf

    no_scope = actes.headers(scopes="archive:read")
    assert_problem(
        await actes.http.get(f"{url}/documents/acte", headers=no_scope), 403, "forbidden"
    )
    assert_problem(
        await actes.http.get(f"{url}/documents/ar_acte", headers=actes.headers()),
        404,
        "acte-document-not-found",
    )
