"""The Hélios simulator: idempotent deposits, real checks, PES_ACQUIT OK or KO, returns."""

from __future__ import annotations

import base64

from kanol_actes_pes.pes import pes_xml
from kanol_actes_pes.pes.testing import TestPki, reshape_flow

from .conftest import PES_SAMPLE, Helios


async def deposit(helios: Helios, content: bytes, key: str) -> dict[str, object]:
    response = await helios.http.post(
        "/v1/depots",
        content=content,
        headers={"Idempotency-Key": key, "Content-Type": "application/xml"},
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


async def acquits(helios: Helios) -> list[pes_xml.Acquit]:
    response = await helios.http.get("/v1/acquits")
    assert response.status_code == 200
    return [
        pes_xml.read_acquit(base64.b64decode(item["content_base64"]))
        for item in response.json()["files"]
    ]


async def test_the_same_key_is_one_deposit_and_another_file_under_it_a_conflict(
    helios: Helios,
) -> None:
    content = PES_SAMPLE.read_bytes()

    first = await deposit(helios, content, "key-1")
    second = await deposit(helios, content, "key-1")
    other = await helios.http.post(
        "/v1/depots",
        content=content.replace(b"STELA11", b"STELA12"),
        headers={"Idempotency-Key": "key-1", "Content-Type": "application/xml"},
    )

    assert first["depot_id"] == second["depot_id"]
    assert other.status_code == 409
    assert len(await acquits(helios)) == 1
    found = await helios.http.get("/v1/depots", params={"idempotency_key": "key-1"})
    assert found.json()["depots"][0]["depot_id"] == first["depot_id"]


async def test_the_real_sample_is_acknowledged_and_yields_a_return(helios: Helios) -> None:
    await deposit(helios, PES_SAMPLE.read_bytes(), "key-ok")

    [acquit] = await acquits(helios)
    retours = (await helios.http.get("/v1/retours")).json()["files"]

    assert acquit.accepted and acquit.nom_fic == "STELA11"
    assert len(retours) == 1
    header = pes_xml.read_retour(base64.b64decode(retours[0]["content_base64"]))
    assert header.id_coll == "75580064600099"


async def test_a_schema_error_and_a_forged_signature_are_answered_ko(
    helios: Helios, pki: TestPki
) -> None:
    sample = PES_SAMPLE.read_bytes()
    invalid = sample.replace(b'MtBordHT V="4874.40"', b'MtBordHT V="beaucoup"')
    forged = reshape_flow(sample, nom_fic="FORGED", number=7, pki=pki).replace(
        b'MtBordHT V="4874.40"', b'MtBordHT V="4874.41"'
    )

    await deposit(helios, invalid, "key-schema")
    await deposit(helios, forged, "key-forged")

    schema, signature = await acquits(helios)
    assert [e.code for e in schema.errors] == ["ERREUR_SCHEMA_INCOMPLET"]
    assert [e.code for e in signature.errors] == ["ERREUR_SIGNATURE_INVALIDE"]
    assert not (await helios.http.get("/v1/retours")).json()["files"]


async def test_a_duplicate_file_name_is_answered_ko(helios: Helios) -> None:
    sample = PES_SAMPLE.read_bytes()
    await deposit(helios, sample, "key-a")
    renumbered = reshape_flow(sample, number=99, unsigned=True)

    await deposit(helios, renumbered, "key-b")

    first, second = await acquits(helios)
    assert first.accepted
    assert [(e.number, e.code) for e in second.errors] == [(1, "ERREUR_AUTRE")]
    assert "Doublon de fichier" in second.errors[0].label


async def test_failures_are_drawn_and_unreadable_files_refused(helios: Helios) -> None:
    helios.simulator.config.failure_rate = 1.0
    failed = await helios.http.post(
        "/v1/depots",
        content=PES_SAMPLE.read_bytes(),
        headers={"Idempotency-Key": "key-down", "Content-Type": "application/xml"},
    )
    helios.simulator.config.failure_rate = 0.0
    unreadable = await helios.http.post(
        "/v1/depots",
        content=b"<not-pes/>",
        headers={"Idempotency-Key": "key-bad", "Content-Type": "application/xml"},
    )

    assert failed.status_code == 503
    assert unreadable.status_code == 422
    assert unreadable.json()["type"].endswith("helios-deposit-refused")
    assert helios.simulator.deposits == {}
