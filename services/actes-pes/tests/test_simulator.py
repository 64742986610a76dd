"""The prefecture simulator checks what it receives and answers in real ACTES messages."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from kanol_actes_pes.acte import Matiere, Nature
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import (
    ArchiveFile,
    GatewayBusy,
    GatewayUnavailable,
    TransmissionArchive,
    TransmissionRejected,
)
from kanol_actes_pes.prefecture.transmission import ActeToTransmit, build_archive, pack
from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig
from kanol_actes_pes.testing import make_pdf

from .conftest import SIREN, Simulator, running_simulator

IDENTIFIANT = f"035-{SIREN}-20240312-2024_45-DE"


def archive_of(
    key: str = "k1",
    numero: str = "2024_45",
    changes: dict[str, bytes | None] | None = None,
    matiere: str = "7.1",
) -> TransmissionArchive:
    """A transmission built by Kanol, with files replaced (or removed, for None) if asked."""
    acte = ActeToTransmit(
        identifiant_acte=f"035-{SIREN}-20240312-{numero}-DE",
        emetteur=actes_xml.Emetteur(SIREN, "035", 1, "31"),
        adresses_retour=("actes@ville.fr",),
        date_decision=date(2024, 3, 12),
        numero_interne=numero,
        nature=Nature.DELIBERATION,
        matiere=Matiere.parse(matiere),
        objet="Délibération de test",
        classification_date=date(2024, 1, 1),
        document=make_pdf(),
    )
    archive = build_archive(acte, transmission_id=key, number=1, day=date(2024, 3, 13))
    if not changes:
        return archive
    files = {
        archive.enveloppe.name: archive.enveloppe,
        archive.message.name: archive.message,
        archive.documents[0].name: archive.documents[0],
    }
    for name, content in changes.items():
        if content is None:
            files.pop(name)
        else:
            files[name] = ArchiveFile(name, content, files[name].media_type)
    return TransmissionArchive(
        idempotency_key=archive.idempotency_key,
        identifiant_acte=archive.identifiant_acte,
        filename=archive.filename,
        content=pack(list(files.values())),
        enveloppe=archive.enveloppe,
        message=archive.message,
        documents=archive.documents,
    )


async def test_a_valid_transmission_gets_an_ar_acte(simulator: Simulator) -> None:
    archive = archive_of()

    receipt = await simulator.gateway.transmit(archive)

    assert receipt.idempotency_key == archive.idempotency_key
    [message] = await simulator.gateway.fetch_messages(None, wait_seconds=2)
    assert message.code == "1-2"
    assert message.transmission_id == receipt.transmission_id
    assert message.filename == f"{IDENTIFIANT}-1-2_{message.cursor}.xml"
    assert message.content.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>")
    ar = actes_xml.read_return_message(message.content)  # validates against the XSD
    assert isinstance(ar, actes_xml.AccuseReception)
    assert ar.identifiant_acte == IDENTIFIANT
    assert ar.acte.numero_interne == "2024_45"
    assert ar.acte.document == archive.documents[0].name
    assert ar.date_reception == receipt.received_at.date()
    assert await simulator.gateway.fetch_messages(message.cursor, wait_seconds=0) == []


async def test_the_same_key_is_one_transmission(simulator: Simulator) -> None:
    archive = archive_of()

    first = await simulator.gateway.transmit(archive)
    second = await simulator.gateway.transmit(archive)

    assert first == second
    assert await simulator.gateway.has_transmission(archive.idempotency_key) == first
    assert await simulator.gateway.has_transmission("never-sent") is None
    [transmission] = await simulator.transmissions(identifiant_acte=IDENTIFIANT)
    assert transmission["deliveries"] == 2
    assert len(await simulator.gateway.fetch_messages(None, wait_seconds=0.2)) == 1

    other_bytes = archive_of(key="k1", numero="2024_46")
    response = await simulator.http.post(
        "/v1/transmissions",
        content=other_bytes.content,
        headers={"Idempotency-Key": archive.idempotency_key},
    )
    assert response.status_code == 409


async def test_a_tampered_envelope_is_refused_with_the_schema_error(simulator: Simulator) -> None:
    good = archive_of()
    tampered = good.enveloppe.content.replace(b'actes:Departement="035"', b'actes:Departement="35"')
    archive = archive_of(changes={good.enveloppe.name: tampered})

    with pytest.raises(TransmissionRejected, match="Departement") as refused:
        await simulator.gateway.transmit(archive)

    assert "ACTES v1.1 schema" in str(refused.value)
    assert await simulator.transmissions() == []
    assert await simulator.gateway.fetch_messages(None, wait_seconds=0) == []


async def test_unsafe_or_unreadable_archives_are_refused(simulator: Simulator) -> None:
    good = archive_of()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("../../etc/evil.xml", good.enveloppe.name):
            info = tarfile.TarInfo(name)
            info.size = len(good.enveloppe.content)
            tar.addfile(info, io.BytesIO(good.enveloppe.content))
    traversal = gzip.compress(raw.getvalue())

    for body, status, words in [
        (traversal, 422, "not a plain file name"),
        (b"not a tar.gz at all", 400, "not a readable tar.gz"),
        (pack([good.message]), 422, "exactly one envelope"),
    ]:
        response = await simulator.http.post(
            "/v1/transmissions", content=body, headers={"Idempotency-Key": "unsafe"}
        )
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
    assert await simulator.transmissions() == []


async def test_a_missing_document_gets_an_anomalie(simulator: Simulator) -> None:
    good = archive_of()
    archive = archive_of(changes={good.documents[0].name: None})

    receipt = await simulator.gateway.transmit(archive)

    [message] = await simulator.gateway.fetch_messages(None, wait_seconds=2)
    assert message.code == "1-3"
    assert message.transmission_id == receipt.transmission_id
    anomalie = actes_xml.read_return_message(message.content)
    assert isinstance(anomalie, actes_xml.Anomalie)
    assert anomalie.nature == "001"
    assert good.documents[0].name in anomalie.detail


async def test_an_acte_sent_again_under_another_key_gets_an_anomalie(
    simulator: Simulator,
) -> None:
    await simulator.gateway.transmit(archive_of(key="first"))
    await simulator.gateway.transmit(archive_of(key="second"))

    messages = await simulator.gateway.fetch_messages(None, wait_seconds=2)

    assert [message.code for message in messages] == ["1-2", "1-3"]
    anomalie = actes_xml.read_return_message(messages[1].content)
    assert isinstance(anomalie, actes_xml.Anomalie)
    assert anomalie.nature == "005"


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[Simulator]:
    config = SimulatorConfig(
        state_path=tmp_path / "capped.sqlite3", max_per_hour=2, ack_delay=0.3, anomaly_rate=1.0
    )
    async for running in running_simulator(config):
        yield running


async def test_volume_cap_delay_and_anomaly_rate(capped: Simulator) -> None:
    await capped.gateway.transmit(archive_of(key="a", numero="A1"))
    await capped.gateway.transmit(archive_of(key="b", numero="B1"))

    with pytest.raises(GatewayBusy) as busy:
        await capped.gateway.transmit(archive_of(key="c", numero="C1"))
    assert 3000 < busy.value.retry_after <= 3601
    # A replay of a key already taken is not a new transmission: no cap applies.
    await capped.gateway.transmit(archive_of(key="a", numero="A1"))

    assert await capped.gateway.fetch_messages(None, wait_seconds=0) == []
    messages = await capped.gateway.fetch_messages(None, wait_seconds=3)
    assert messages
    assert all(message.code == "1-3" for message in messages)
    anomalie = actes_xml.read_return_message(messages[0].content)
    assert isinstance(anomalie, actes_xml.Anomalie)
    assert anomalie.nature == "099"


async def test_an_outdated_classification_gets_an_anomalie() -> None:
    config = SimulatorConfig(state_path=":memory:", classification_date=date(2025, 1, 1))
    async for newer in running_simulator(config):
        await newer.gateway.transmit(archive_of())

        [message] = await newer.gateway.fetch_messages(None, wait_seconds=2)

        anomalie = actes_xml.read_return_message(message.content)
        assert isinstance(anomalie, actes_xml.Anomalie)
        assert anomalie.nature == "002"
        assert anomalie.classification_date_en_cours == date(2025, 1, 1)


async def test_a_failing_gateway_records_nothing() -> None:
    config = SimulatorConfig(state_path=":memory:", failure_rate=1.0, seed=3)
    async for failing in running_simulator(config):
        with pytest.raises(GatewayUnavailable, match="503"):
            await failing.gateway.transmit(archive_of())
        assert await failing.transmissions() == []


async def test_an_unknown_matiere_gets_an_anomalie(simulator: Simulator) -> None:
    await simulator.gateway.transmit(archive_of(numero="9_8", matiere="9.8"))

    [reply] = await simulator.gateway.fetch_messages(None, wait_seconds=2)
    anomalie = actes_xml.read_return_message(reply.content)
    assert isinstance(anomalie, actes_xml.Anomalie)
    assert anomalie.nature == "006" and "9.8" in anomalie.detail
