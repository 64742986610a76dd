"""The whole ACTES transaction, driven by hand against the in-process prefecture simulator:
annexes, classification, the prefecture's letters and the authority's answers, cancellation,
late actes, the hourly volume, listing and Idempotency-Key."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from lxml import etree
from prometheus_client import REGISTRY

from kanol_actes_pes import classification, repository
from kanol_actes_pes.monitor import Monitor
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import (
    GatewayUnavailable,
    ReturnMessage,
    TransmissionArchive,
)
from kanol_actes_pes.testing import make_pdf
from kanol_common.envelope import decode, header_map
from kanol_common.events.actes import (
    ActeAcknowledged,
    ActeAcknowledgementOverdue,
    ActeAnswerSent,
    ActeCancellationRequested,
    ActeCancelled,
    ActeCourrierSimpleReceived,
    ActeDefereReceived,
    ActeLettreObservationsReceived,
    ActeMessageRefused,
    ActePiecesComplementairesAnswered,
    ActePiecesComplementairesRequested,
    ActeTransmissionStuck,
    ClassificationUpdated,
)
from kanol_common.testing.delivery import read_topic, wait_until
from kanol_common.testing.organisations import seed_organisation

from .conftest import OTHER_SIREN, Actes
from .test_submit import assert_problem


async def events(actes: Actes, kafka_bootstrap: str, count: int) -> list[Any]:
    topic = f"{actes.settings.kafka_topic_prefix}actes.events"
    records = await read_topic(kafka_bootstrap, topic, count=count, wait_seconds=15)
    return [decode(header_map(record.headers), record.value).data for record in records]


async def acknowledged_acte(actes: Actes, **metadata: Any) -> dict[str, Any]:
    response = await actes.submit(actes.metadata(**metadata))
    assert response.status_code == 201, response.text
    await actes.transmitter.run_once()
    await actes.receiver.fetch_once(wait_seconds=2)
    acte = await actes.acte(response.json()["id"])
    assert acte["state"] == "acknowledged", acte
    return acte


async def test_annexes_go_in_the_tar_gz_under_their_piece_types(
    actes: Actes, kafka_bootstrap: str
) -> None:
    metadata = actes.metadata(annexes=[{"type_piece": "21_RP"}, {"type_piece": "99_SE"}])
    response = await actes.submit(metadata, annexes=[make_pdf(2), make_pdf(1, "annexe 2")])
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["classification_date"] == "2019-03-01"
    assert [d["type_piece"] for d in created["documents"]] == ["99_DE", "21_RP", "99_SE"]

    await actes.transmitter.run_once()
    acte = await actes.acte(created["id"])
    roles = {d["role"]: d for d in acte["documents"]}
    archive = await actes.http.get(roles["archive_transmission"]["uri"], headers=actes.headers())
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.content))) as tar:
        names = tar.getnames()
        files = {name: tar.extractfile(name).read() for name in names}  # type: ignore[union-attr]
    identifiant = acte["identifiant_acte"]
    assert names[1:] == [
        f"{identifiant}-1-1_0.xml",
        f"99_DE-{identifiant}-1-1_1.pdf",
        f"21_RP-{identifiant}-1-1_2.pdf",
        f"99_SE-{identifiant}-1-1_3.pdf",
    ]
    message = files[f"{identifiant}-1-1_0.xml"]
    assert message.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>")
    root = actes_xml.parse(message)
    annexes = root.find(actes_xml.qname("Annexes"))
    assert annexes is not None and annexes.get(actes_xml.qname("Nombre")) == "2"
    assert "vote des taux".encode("iso-8859-1") in message  # objet in Latin-1, not UTF-8

    await actes.receiver.fetch_once(wait_seconds=2)
    submitted, _, acknowledged = await events(actes, kafka_bootstrap, 3)
    assert len(submitted.documents) == 3
    assert isinstance(acknowledged, ActeAcknowledged)
    assert [(a.position, a.type_piece, a.role) for a in acknowledged.annexes] == [
        (1, "21_RP", "annexe_1"),
        (2, "99_SE", "annexe_2"),
    ]
    assert {"annexe_1", "annexe_2", "acte_tamponne"} <= {d.role for d in acknowledged.documents}


async def test_the_classification_refuses_unknown_codes_and_is_updated_by_7_2(
    actes: Actes, kafka_bootstrap: str
) -> None:
    before = await actes.counts()
    unknown = await actes.submit(actes.metadata(matiere="9.9"))
    body = assert_problem(unknown, 422, "acte-matiere-unknown")
    assert "7.1.3" in body["valid_matieres"] and body["classification_date"] == "2019-03-01"
    wrong_type = await actes.submit(actes.metadata(nature=3, type_piece="21_RP"))
    refused = assert_problem(wrong_type, 422, "acte-type-piece-invalid")
    assert "41_NC" in refused["valid_types_piece"]
    missing = await actes.submit(actes.metadata(annexes=[{"type_piece": "21_RP"}]))
    assert_problem(missing, 422, "acte-annexes-mismatch")
    assert await actes.counts() == before

    # The prefecture publishes a new classification with a matière 9.9; a 7-1 brings it.
    updated = _classification_with_9_9()
    put = await actes.simulator.http.put("/v1/operator/classification", content=updated)
    assert put.status_code == 204, put.text
    refresh = await actes.http.post("/v1/classifications/035/refresh", headers=actes.headers())
    assert refresh.status_code == 202, refresh.text
    await actes.receiver.fetch_once(wait_seconds=2)

    current = await actes.http.get("/v1/classifications/035", headers=actes.headers())
    assert current.json()["date_classification"] == "2025-01-01"
    assert current.json()["matieres"]["9.9"] == "Essai"
    accepted = await actes.submit(actes.metadata(matiere="9.9"))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["classification_date"] == "2025-01-01"
    [update] = [
        e for e in await events(actes, kafka_bootstrap, 2) if type(e) is ClassificationUpdated
    ]
    assert update.departement == "035" and update.date_classification.isoformat() == "2025-01-01"

    # Asked again with the current version: "unchanged" (7-3), nothing new is kept.
    again = await actes.http.post("/v1/classifications/035/refresh", headers=actes.headers())
    assert again.json()["held"] == "2025-01-01"
    await actes.receiver.fetch_once(wait_seconds=2)
    document = await actes.http.get("/v1/classifications/035/document", headers=actes.headers())
    assert classification.read(document.content).date_classification.isoformat() == "2025-01-01"


def _classification_with_9_9() -> bytes:
    root = etree.fromstring(classification.seed_bytes(), actes_xml.safe_parser())
    q = actes_xml.qname
    day = root.find(q("DateClassification"))
    assert day is not None
    day.text = "2025-01-01"
    matieres = root.find(q("Matieres"))
    assert matieres is not None
    first = etree.SubElement(
        matieres, q("Matiere1"), {q("CodeMatiere"): "9", q("Libelle"): "Autre"}
    )
    etree.SubElement(first, q("Matiere2"), {q("CodeMatiere"): "9", q("Libelle"): "Essai"})
    return actes_xml.serialize(root)


async def test_letters_of_the_prefecture_are_stored_published_and_answered(
    actes: Actes, kafka_bootstrap: str
) -> None:
    acte = await acknowledged_acte(actes)
    identifiant = acte["identifiant_acte"]
    for kind in ("courrier_simple", "pieces_complementaires", "lettre_observations", "defere"):
        sent = await actes.simulator.http.post(
            f"/v1/operator/actes/{identifiant}/letters",
            json={"kind": kind, "texte": f"Texte {kind} éàç"},
        )
        assert sent.status_code == 202, sent.text
    assert await actes.receiver.fetch_once(wait_seconds=2) == 4

    listed = await actes.http.get(f"/v1/actes/{acte['id']}/messages", headers=actes.headers())
    letters = {m["code"]: m for m in listed.json()["items"]}
    assert set(letters) == {"2-1", "3-1", "4-1", "5-1"}
    demande = letters["3-1"]
    assert demande["texte"] == "Texte pieces_complementaires éàç"
    assert [d["role"] for d in demande["documents"]] == [
        f"message_{demande['number']}",
        f"message_{demande['number']}_1",
    ]
    pdf = await actes.http.get(demande["documents"][1]["uri"], headers=actes.headers())
    assert pdf.content.startswith(b"%PDF-")
    assert letters["5-1"]["date_depot"] is not None

    wrong = await _answer(actes, acte["id"], letters["2-1"]["id"], "3-4")
    assert_problem(wrong, 409, "acte-answer-not-allowed")
    answer = await _answer(actes, acte["id"], demande["id"], "3-4")
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "pending" and answer.json()["in_reply_to"] == demande["id"]
    twice = await _answer(actes, acte["id"], demande["id"], "3-3")
    assert_problem(twice, 409, "acte-answer-not-allowed")

    assert await actes.app.state.actes_sender.send_due() == 1
    await actes.receiver.fetch_once(wait_seconds=2)
    listed = await actes.http.get(f"/v1/actes/{acte['id']}/messages", headers=actes.headers())
    by_code = {m["code"]: m for m in listed.json()["items"]}
    assert by_code["3-4"]["state"] == "acknowledged"
    assert by_code["3-5"]["in_reply_to"] == by_code["3-4"]["id"]
    assert by_code["3-1"]["state"] == "answered"

    kinds = [type(event) for event in await events(actes, kafka_bootstrap, 9)][3:]
    assert kinds == [
        ActeCourrierSimpleReceived,
        ActePiecesComplementairesRequested,
        ActeLettreObservationsReceived,
        ActeDefereReceived,
        ActeAnswerSent,
        ActePiecesComplementairesAnswered,
    ]


async def _answer(
    actes: Actes, acte_id: str, message_id: str, code: str, pdf: bytes | None = None
) -> httpx.Response:
    metadata = {"code": code, "documents": [{"type_piece": "99_AU"}]}
    files = [
        ("metadata", (None, json.dumps(metadata).encode(), "application/json")),
        ("documents", ("piece.pdf", pdf or make_pdf(), "application/pdf")),
    ]
    return await actes.http.post(
        f"/v1/actes/{acte_id}/messages/{message_id}/answers", files=files, headers=actes.headers()
    )


async def test_messages_the_gateway_refuses_are_handed_back(
    actes: Actes, kafka_bootstrap: str
) -> None:
    acte = await acknowledged_acte(actes)
    letter = await actes.simulator.http.post(
        f"/v1/operator/actes/{acte['identifiant_acte']}/letters",
        json={"kind": "pieces_complementaires", "texte": "Pièces ?"},
    )
    assert letter.status_code == 202, letter.text
    assert await actes.receiver.fetch_once(wait_seconds=2) == 1
    messages_url = f"/v1/actes/{acte['id']}/messages"
    [demande] = (await actes.http.get(messages_url, headers=actes.headers())).json()["items"]
    simulator = actes.simulator.app.state.simulator
    limits = simulator.config.limits
    simulator.config.limits = type(limits)(max_archive_bytes=10)  # refuses every archive
    assert (await _answer(actes, acte["id"], demande["id"], "3-4")).status_code == 201
    cancel = f"/v1/actes/{acte['id']}/cancel"
    assert (await actes.http.post(cancel, json={}, headers=actes.headers())).status_code == 202

    assert await actes.app.state.actes_sender.send_due() == 2
    simulator.config.limits = limits

    by_code = {
        m["code"]: m
        for m in (await actes.http.get(messages_url, headers=actes.headers())).json()["items"]
    }
    assert by_code["3-4"]["state"] == by_code["6-1"]["state"] == "failed"
    assert "exceeds" in by_code["3-4"]["last_error"]
    assert by_code["3-1"]["state"] == "received"  # open again
    assert (await actes.acte(acte["id"]))["state"] == "acknowledged"
    refusals = [
        event
        for event in await events(actes, kafka_bootstrap, 7)
        if isinstance(event, ActeMessageRefused)
    ]
    assert sorted(event.code for event in refusals) == ["3-4", "6-1"]
    # The authority answers anew and asks the annulation anew: both go through now.
    assert (await _answer(actes, acte["id"], demande["id"], "3-4")).status_code == 201
    assert (await actes.http.post(cancel, json={}, headers=actes.headers())).status_code == 202
    assert await actes.app.state.actes_sender.send_due() == 2
    await actes.receiver.fetch_once(wait_seconds=2)
    assert (await actes.acte(acte["id"]))["state"] == "cancelled"


async def test_cancellation(actes: Actes, kafka_bootstrap: str) -> None:
    acte = await acknowledged_acte(actes)
    url = f"/v1/actes/{acte['id']}/cancel"
    requested = await actes.http.post(url, json={"reason": "retirée"}, headers=actes.headers())
    assert requested.status_code == 202, requested.text
    assert requested.json()["state"] == "cancellation_requested"
    again = await actes.http.post(url, json={}, headers=actes.headers())
    assert_problem(again, 409, "acte-not-cancellable")

    await actes.app.state.actes_sender.send_due()
    await actes.receiver.fetch_once(wait_seconds=2)
    cancelled = await actes.acte(acte["id"])
    assert cancelled["state"] == "cancelled" and cancelled["cancelled_at"]
    messages = await actes.http.get(f"/v1/actes/{acte['id']}/messages", headers=actes.headers())
    assert [(m["code"], m["state"]) for m in messages.json()["items"]] == [
        ("6-1", "acknowledged"),
        ("6-2", "received"),
    ]
    [annulation] = await actes.simulator.transmissions(
        idempotency_key=f"{acte['identifiant_acte']}/{messages.json()['items'][0]['id']}"
    )
    assert annulation["outcome"] == "message"

    # An acte never sent is cancelled at once: nothing goes to the prefecture.
    waiting = (await actes.submit()).json()
    local = await actes.http.post(f"/v1/actes/{waiting['id']}/cancel", headers=actes.headers())
    assert local.json()["state"] == "cancelled"
    assert await actes.transmitter.run_once() == 0
    assert await actes.simulator.transmissions(identifiant_acte=waiting["identifiant_acte"]) == []

    # One acte's events keep their order (its partition); two actes' may interleave.
    by_acte: dict[str, list[type]] = {}
    for event in await events(actes, kafka_bootstrap, 8):
        by_acte.setdefault(event.acte_id, []).append(type(event))
    assert by_acte[acte["id"]][3:] == [ActeCancellationRequested, ActeCancelled]
    assert by_acte[waiting["id"]][1:] == [ActeCancellationRequested, ActeCancelled]


async def test_list_search_and_cursor(actes: Actes) -> None:
    created = []
    for objet in ("Voirie communale", "Tarifs cantine", "Tarifs piscine 100%", "Budget", "Voirie"):
        response = await actes.submit(actes.metadata(objet=objet, nature=1))
        created.append(response.json())
    await actes.submit(actes.metadata(nature=3, objet="Nomination"))

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "nature": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await actes.http.get("/v1/actes", params=params, headers=actes.headers())).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [acte["id"] for acte in reversed(created)]

    async def ids(**params: Any) -> list[str]:
        response = await actes.http.get("/v1/actes", params=params, headers=actes.headers())
        assert response.status_code == 200, response.text
        return [item["objet"] for item in response.json()["items"]]

    assert await ids(objet="tarifs") == ["Tarifs piscine 100%", "Tarifs cantine"]
    assert await ids(objet="100%") == ["Tarifs piscine 100%"]
    assert await ids(objet="_") == []
    assert await ids(numero_interne=created[3]["numero_interne"]) == ["Budget"]
    assert await ids(nature=3) == ["Nomination"]
    assert len(await ids(state="waiting_for_transmission")) == 6
    assert await ids(state="acknowledged") == []
    assert len(await ids(date_decision_from=created[0]["date_decision"])) == 6
    assert len(await ids(created_from="2000-01-01T00:00:00")) == 6  # no zone: UTC
    assert await ids(created_to="2000-01-01T00:00:00+02:00") == []
    other = await actes.http.get("/v1/actes", headers=actes.headers(siren=OTHER_SIREN))
    assert other.json()["items"] == []
    bad = await actes.http.get("/v1/actes", params={"cursor": "nope"}, headers=actes.headers())
    assert_problem(bad, 400, "invalid-cursor")


async def test_idempotency_key_replays_and_refuses_another_body(actes: Actes) -> None:
    key = str(uuid.uuid4())
    metadata = actes.metadata()
    pdf = make_pdf()
    first = await actes.submit(metadata, pdf, idempotency_key=key)
    second = await actes.submit(metadata, pdf, idempotency_key=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotency-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    counts = await actes.counts()
    assert counts["acte"] == 1

    other = await actes.submit(actes.metadata(), pdf, idempotency_key=key)
    assert_problem(other, 422, "idempotency-key-reused")
    assert await actes.counts() == counts


async def test_beyond_the_hourly_cap_actes_wait_in_order(actes: Actes) -> None:
    actes.settings.prefecture_max_per_hour = 2
    ids = [(await actes.submit()).json()["id"] for _ in range(4)]
    assert await actes.transmitter.run_once() == 2
    states = [(await actes.acte(acte_id))["state"] for acte_id in ids]
    assert states == ["transmitted"] * 2 + ["waiting_for_transmission"] * 2
    waiting = await actes.acte(ids[2])
    assert waiting["waiting_for_capacity"] is True
    assert REGISTRY.get_sample_value("kanol_actes_waiting_for_capacity") == 2
    assert await actes.transmitter.run_once() == 0

    actes.settings.prefecture_max_per_hour = 3
    assert await actes.transmitter.run_once() == 1
    assert (await actes.acte(ids[2]))["state"] == "transmitted"  # the oldest goes first
    assert REGISTRY.get_sample_value("kanol_actes_waiting_for_capacity") == 1
    actes.settings.prefecture_max_per_hour = 10
    assert await actes.transmitter.run_once() == 1
    assert (await actes.acte(ids[3]))["waiting_for_capacity"] is False
    assert REGISTRY.get_sample_value("kanol_actes_waiting_for_capacity") == 0


async def test_late_actes_are_reported_once(actes: Actes, kafka_bootstrap: str) -> None:
    actes.settings.acknowledgement_overdue_seconds = 0.000001
    actes.settings.transmission_stuck_seconds = 0.000001
    monitor = Monitor(actes.app.state.runtime.database, actes.settings)

    late = (await actes.submit()).json()
    await actes.transmitter.run_once()  # transmitted; its ARActe is never read
    stuck = (await actes.submit()).json()
    actes.transmitter.gateway = _Unreachable(actes.transmitter.gateway)
    await actes.transmitter.run_once()  # stays transmitting: the gateway is unreachable

    assert await monitor.check_once() == 2
    assert await monitor.check_once() == 0
    assert (await actes.acte(late["id"]))["acknowledgement_overdue_at"] is not None
    assert (await actes.acte(stuck["id"]))["transmission_stuck_at"] is not None
    assert REGISTRY.get_sample_value("kanol_actes_late", {"kind": "overdue"}) == 1
    assert REGISTRY.get_sample_value("kanol_actes_late", {"kind": "stuck"}) == 1
    response = await actes.http.get("/v1/actes", params={"overdue": True}, headers=actes.headers())
    assert {item["id"] for item in response.json()["items"]} == {late["id"], stuck["id"]}
    reported = {type(event): event for event in await events(actes, kafka_bootstrap, 5)}
    assert reported[ActeAcknowledgementOverdue].acte_id == late["id"]
    assert reported[ActeTransmissionStuck].acte_id == stuck["id"]
    assert "unreachable" in (reported[ActeTransmissionStuck].last_error or "")


class _Unreachable:
    """The prefecture gateway as seen from a network that lost it."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    async def transmit(self, archive: TransmissionArchive) -> Any:
        raise GatewayUnavailable("gateway unreachable: connection refused")

    async def has_transmission(self, idempotency_key: str) -> Any:
        raise GatewayUnavailable("gateway unreachable: connection refused")

    async def fetch_messages(self, after_cursor: str | None, wait_seconds: float) -> Any:
        return await self._gateway.fetch_messages(after_cursor, wait_seconds)


async def test_stamped_pdf_keeps_every_page(actes: Actes) -> None:
    response = await actes.submit(document=make_pdf(3))
    await actes.transmitter.run_once()
    await actes.receiver.fetch_once(wait_seconds=2)
    acte = await actes.acte(response.json()["id"])
    stamped = next(d for d in acte["documents"] if d["role"] == "acte_tamponne")
    content = (await actes.http.get(stamped["uri"], headers=actes.headers())).content
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    assert len(reader.pages) == 3
    text = reader.pages[0].extract_text()
    assert f"ID : {acte['identifiant_acte']}" in text
    transmitted = datetime.fromisoformat(acte["transmitted_at"])
    assert f"Envoyé en préfecture le {transmitted:%d/%m/%Y}" in text
    assert reader.pages[1].extract_text() == ""
    assert transmitted - timedelta(days=1) < datetime.fromisoformat(acte["acknowledged_at"])
    database = actes.app.state.runtime.database
    async with database.session() as session:
        documents = await repository.documents_of(session, uuid.UUID(acte["id"]))
    assert sum(1 for d in documents if d.role == "acte_tamponne") == 1


async def test_the_envelope_names_the_organisation_with_identitys_codes(actes: Actes) -> None:
    # A syndicat whose convention with its prefecture gives arrondissement 4 and nature 25:
    # the settings' defaults (035, 1 and 31) must not appear in its envelope.
    siren = "200000024"
    await seed_organisation(
        actes.app.state.runtime.database,
        siren,
        kind="syndicat",
        departement="029",
        arrondissement=4,
        nature_collectivite="25",
    )
    created = await actes.submit(headers=actes.headers(siren))
    assert created.status_code == 201, created.text
    await actes.transmitter.run_once()

    acte = await actes.http.get(f"/v1/actes/{created.json()['id']}", headers=actes.headers(siren))
    documents = {d["role"]: d for d in acte.json()["documents"]}
    sent = await actes.http.get(documents["enveloppe"]["uri"], headers=actes.headers(siren))
    q = actes_xml.qname
    idcl = etree.fromstring(sent.content, actes_xml.safe_parser()).find(
        f"{q('Emetteur')}/{q('IDCL')}"
    )
    assert idcl is not None
    assert (idcl.get(q("Departement")), idcl.get(q("Arrondissement")), idcl.get(q("Nature"))) == (
        "029",
        "4",
        "25",
    )
    assert acte.json()["identifiant_acte"].startswith(f"029-{siren}-")


async def test_an_anomalie_enveloppe_refuses_the_acte(actes: Actes) -> None:
    created = (await actes.submit()).json()
    await actes.transmitter.run_once()
    acte = await actes.acte(created["id"])
    roles = {d["role"]: d for d in acte["documents"]}
    sent = await actes.http.get(roles["enveloppe"]["uri"], headers=actes.headers())
    [transmission] = await actes.simulator.transmissions(identifiant_acte=acte["identifiant_acte"])

    q = actes_xml.qname
    received = etree.fromstring(sent.content, actes_xml.safe_parser())
    received.tag = q("EnveloppeRecue")
    root = etree.Element(q("AnomalieEnveloppe"), nsmap=actes_xml.NSMAP)
    etree.SubElement(root, q("Date")).text = "2024-12-03"
    etree.SubElement(root, q("Nature")).text = "003"
    etree.SubElement(root, q("Detail")).text = "Enveloppe non conforme"
    root.append(received)
    await actes.receiver.handle(
        ReturnMessage(
            cursor="0",
            code="1-3",
            filename=f"ANO_{roles['enveloppe']['filename']}",
            content=actes_xml.serialize(root),
            transmission_id=transmission["transmission_id"],
            identifiant_acte=None,
            received_at=datetime.now(UTC),
        )
    )
    refused = await actes.acte(created["id"])
    assert refused["state"] == "refused"
    assert (refused["nature_anomalie"], refused["detail_anomalie"]) == (
        "003",
        "Enveloppe non conforme",
    )


async def test_a_newer_classification_announced_by_the_prefecture_is_fetched(
    actes: Actes,
) -> None:
    put = await actes.simulator.http.put(
        "/v1/operator/classification", content=_classification_with_9_9()
    )
    assert put.status_code == 204
    created = (await actes.submit()).json()
    await actes.transmitter.run_once()
    await actes.receiver.fetch_once(wait_seconds=2)  # anomalie 002: outdated classification
    assert (await actes.acte(created["id"]))["nature_anomalie"] == "002"

    async def asked() -> bool:
        return any(
            t["idempotency_key"].startswith("classification/035/")
            for t in await actes.simulator.transmissions()
        )

    await wait_until(asked, wait_seconds=10, what="a 7-1 for 035")
    await actes.receiver.fetch_once(wait_seconds=2)
    current = await actes.http.get("/v1/classifications/035", headers=actes.headers())
    assert current.json()["date_classification"] == "2025-01-01"


async def test_the_departement_comes_from_the_organisation(actes: Actes) -> None:
    siren = "212900013"
    await seed_organisation(actes.app.state.runtime.database, siren, departement="029")
    response = await actes.submit(actes.metadata(), headers=actes.headers(siren=siren))
    assert response.status_code == 201, response.text
    assert response.json()["identifiant_acte"].startswith(f"029-{siren}-")
    given = await actes.submit(actes.metadata(departement="974"), headers=actes.headers(siren))
    assert given.json()["identifiant_acte"].startswith(f"974-{siren}-")


class _LostAnswer:
    """The gateway takes the transmission, and its answer is lost on the way back."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    async def transmit(self, archive: TransmissionArchive) -> Any:
        await self._gateway.transmit(archive)
        raise GatewayUnavailable("gateway unreachable: read timeout")


async def test_an_annulation_whose_answer_is_lost_is_sent_once(actes: Actes) -> None:
    acte = await acknowledged_acte(actes)
    sender = actes.app.state.actes_sender
    gateway = sender.gateway
    await actes.http.post(f"/v1/actes/{acte['id']}/cancel", headers=actes.headers())

    actes.settings.transmit_retry_base_seconds = 0.000001  # due again at once
    sender.gateway = _LostAnswer(gateway)
    await sender.send_due()
    messages_url = f"/v1/actes/{acte['id']}/messages"
    [pending] = (await actes.http.get(messages_url, headers=actes.headers())).json()["items"]
    assert pending["state"] == "pending" and "read timeout" in pending["last_error"]

    sender.gateway = gateway
    assert await sender.send_due() == 1
    [transmission] = await actes.simulator.transmissions(
        idempotency_key=f"{acte['identifiant_acte']}/{pending['id']}"
    )
    assert transmission["deliveries"] == 2  # the same key twice: one transmission
    await actes.receiver.fetch_once(wait_seconds=2)
    assert (await actes.acte(acte["id"]))["state"] == "cancelled"
    items = (await actes.http.get(messages_url, headers=actes.headers())).json()["items"]
    assert [m["code"] for m in items] == ["6-1", "6-2"]
