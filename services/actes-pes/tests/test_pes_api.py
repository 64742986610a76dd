"""Posting PES flows: what is accepted, and every refusal, which stores and publishes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from kanol_actes_pes.pes.testing import ENCRYPTION_KEY_USAGE, TestPki
from kanol_common.testing.organisations import seed_organisation

from .conftest import OTHER_SIREN, PES_SAMPLE, Pes

PROBLEM = "https://kanol.fr/problems/"
NOTHING = {"pes_flow": 0, "pes_document": 0, "pes_state_change": 0, "outbox": 0, "objects": 0}


def problem_of(body: dict[str, Any]) -> str:
    return str(body["type"]).removeprefix(PROBLEM)


async def refused(pes: Pes, content: bytes, status: int, slug: str, **post: Any) -> str:
    response = await pes.post(content, **post)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem_of(response.json()) == slug
    assert await pes.counts() == NOTHING
    return str(response.json()["detail"])


async def test_a_signed_flow_is_accepted_queued_and_announced(pes: Pes) -> None:
    content = pes.flow(nom_fic="PESALR2_ACCEPTED")

    response = await pes.post(content)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/v1/pes/flows/{body['id']}"
    assert body["state"] == "submitted"
    assert (body["nom_fic"], body["id_coll"], body["siren"]) == (
        "PESALR2_ACCEPTED",
        "75580064600099",
        "755800646",
    )
    assert (body["cod_col"], body["cod_bud"], body["id_post"]) == ("244", "00", "010001")
    assert body["signed"] and body["signer_trusted"]
    assert body["signatures"][0]["signed_ids"] == ["N10025"]
    assert await pes.counts() == {
        "pes_flow": 1,
        "pes_document": 1,
        "pes_state_change": 1,
        "outbox": 1,
        "objects": 1,
    }
    download = await pes.http.get(f"/v1/pes/flows/{body['id']}/flow", headers=pes.headers())
    assert download.status_code == 200
    assert download.content == content
    assert (await pes.get(body["id"]))["documents"][0]["role"] == "pes_aller"


async def test_a_flow_can_be_posted_as_multipart(pes: Pes) -> None:
    files = {"flow": ("mon-flux.xml", pes.flow(), "application/xml")}

    response = await pes.http.post("/v1/pes/flows", files=files, headers=pes.headers())

    assert response.status_code == 201, response.text
    assert response.json()["documents"][0]["filename"] == "mon-flux.xml"


async def test_an_unsigned_flow_is_accepted_and_flagged(pes: Pes) -> None:
    response = await pes.post(pes.flow(pki=None, unsigned=True))

    assert response.status_code == 201, response.text
    assert response.json()["signed"] is False
    assert response.json()["signer_trusted"] is False


async def test_an_unsigned_flow_is_refused_when_signatures_are_required(pes: Pes) -> None:
    context = pes.app.state.pes
    settings = context.settings.model_copy(update={"pes_accept_unsigned": False})
    pes.app.state.pes = dataclasses.replace(context, settings=settings)

    await refused(pes, pes.flow(pki=None, unsigned=True), 422, "pes-unsigned-refused")


async def test_the_same_nom_fic_again_is_a_conflict(pes: Pes) -> None:
    first = await pes.post(pes.flow(nom_fic="PESALR2_TWICE"))
    assert first.status_code == 201

    again = await pes.post(pes.flow(nom_fic="PESALR2_TWICE"))
    unsigned = pes.flow(pki=None, unsigned=True)
    same_bytes = await pes.post(unsigned)
    same_bytes_again = await pes.post(unsigned)

    assert again.status_code == 409
    assert problem_of(again.json()) == "pes-flow-duplicate"
    assert again.json()["existing_flow_id"] == first.json()["id"]
    assert same_bytes.status_code == 201
    assert same_bytes_again.status_code == 409
    assert (await pes.counts())["pes_flow"] == 2


async def test_an_idempotency_key_replays_the_first_answer(pes: Pes) -> None:
    content = pes.flow()
    headers = {**pes.headers(), "Idempotency-Key": str(uuid.uuid4())}

    first = await pes.post(content, headers=headers)
    second = await pes.post(content, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("Idempotency-Replayed") == "true"
    assert (await pes.counts())["pes_flow"] == 1


async def test_a_flow_of_another_organisation_is_forbidden(pes: Pes) -> None:
    detail = await refused(
        pes, pes.flow(), 403, "pes-other-organisation", headers=pes.headers(OTHER_SIREN)
    )
    assert "75580064600099" in detail and OTHER_SIREN in detail


async def test_an_organisation_without_the_pes_subscription_is_refused(pes: Pes) -> None:
    siren = "253514491"
    await seed_organisation(pes.app.state.runtime.database, siren, services=("actes",))

    response = await pes.post(pes.flow(id_coll=f"{siren}00016"), headers=pes.headers(siren))

    assert response.status_code == 403
    assert problem_of(response.json()) == "not-subscribed"
    assert await pes.counts() == NOTHING


async def test_a_byte_changed_after_signing_is_refused(pes: Pes) -> None:
    forged = pes.flow().replace(b'MtBordHT V="4874.40"', b'MtBordHT V="4874.41"')

    detail = await refused(pes, forged, 422, "pes-signature-invalid")
    assert "N10025" in detail


async def test_a_signer_from_an_unknown_authority_is_refused(pes: Pes) -> None:
    stranger = TestPki.create(signer_name="Not trusted")

    await refused(pes, pes.flow(pki=stranger), 422, "pes-signer-untrusted")


async def test_a_certificate_not_for_signing_is_refused(pes: Pes) -> None:
    encryption_only = pes.pki.with_signer("Clé de chiffrement", key_usage=ENCRYPTION_KEY_USAGE)

    detail = await refused(pes, pes.flow(pki=encryption_only), 422, "pes-signer-untrusted")
    assert "not for signing" in detail


async def test_a_flow_invalid_against_the_schema_is_refused(pes: Pes) -> None:
    invalid = pes.flow().replace(b'<IdPost V="010001"/>', b"")

    response = await pes.post(invalid)

    assert response.status_code == 422
    assert problem_of(response.json()) == "pes-schema-invalid"
    assert "IdPost" in str(response.json()["errors"])
    assert await pes.counts() == NOTHING


@pytest.mark.parametrize(
    ("content", "slug"),
    [
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE n:PES_Aller [<!ENTITY xxe SYSTEM'
            b' "file:///etc/passwd">]><n:PES_Aller xmlns:n="http://www.minefi.gouv.fr/cp/'
            b'helios/pes_v2/Rev0/aller">&xxe;</n:PES_Aller>',
            "pes-xml-forbidden",
            id="xxe",
        ),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            b"<lolz>&lol3;</lolz>",
            "pes-xml-forbidden",
            id="entity-expansion",
        ),
        pytest.param(b"<a>" * 50_000 + b"</a>" * 50_000, "pes-xml-malformed", id="deep-nesting"),
        pytest.param(b"<n:PES_Aller", "pes-xml-malformed", id="truncated"),
        pytest.param(
            '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
            "pes-encoding-invalid",
            id="utf-16",
        ),
        pytest.param(
            PES_SAMPLE.read_bytes().replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"', 1),
            "pes-encoding-invalid",
            id="latin1-declared-utf8",
        ),
        pytest.param(
            b'<?xml version="1.0" encoding="ISO-8859-1"?><Acte/>',
            "pes-not-pes-aller",
            id="not-pes",
        ),
    ],
)
async def test_hostile_or_broken_xml_is_refused(pes: Pes, content: bytes, slug: str) -> None:
    await refused(pes, content, 422, slug)


async def test_a_document_over_the_limit_is_refused(pes: Pes) -> None:
    context = pes.app.state.pes
    settings = context.settings.model_copy(update={"pes_max_upload_bytes": 100_000})
    pes.app.state.pes = dataclasses.replace(context, settings=settings)

    await refused(pes, pes.flow(), 413, "pes-too-large")


async def test_a_flow_not_sent_as_xml_is_refused(pes: Pes) -> None:
    await refused(pes, pes.flow(), 415, "pes-not-xml", content_type="text/plain")


async def test_another_organisations_flow_is_not_found(pes: Pes) -> None:
    posted = await pes.post(pes.flow())
    flow_id = posted.json()["id"]
    other = pes.headers(OTHER_SIREN)

    for path in ("", "/history", "/flow", "/acquit"):
        response = await pes.http.get(f"/v1/pes/flows/{flow_id}{path}", headers=other)
        assert response.status_code == 404, path
        assert problem_of(response.json()) == "pes-flow-not-found"


async def test_every_pes_operation_documents_an_example(pes: Pes) -> None:
    document = (await pes.http.get("/openapi.json")).json()
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/pes/")
        for method, operation in methods.items()
    ]

    assert len(operations) == 9
    for path, method, operation in operations:
        examples = [
            content["example"]
            for response in operation["responses"].values()
            for content in response.get("content", {}).values()
            if "example" in content
        ]
        assert examples, f"{method.upper()} {path} has no example"
