"""Acknowledged actes and PES flows become SEDA 2.1 transfers, through Kafka and PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from kanol_archive.consumers import GROUP_ID
from kanol_archive.models import Archive
from kanol_archive.seda.manifest import KANOL_NS
from kanol_archive.seda.schema import SedaVersion, parse, validation_errors
from kanol_archive.settings import ArchiveSettings
from kanol_common.consumer import H_ERROR
from kanol_common.envelope import H_ID, CloudEvent, decode, header_map
from kanol_common.events.actes import AnnexeInfo
from kanol_common.events.archive import ArchiveDeposited
from kanol_common.events.pes import PesFlowAcknowledged
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import read_topic, wait_until

from .conftest import OTHER_SIREN, SIREN, Document, acknowledged, bearer, publish, publish_again
from .document_server import DocumentServer

pytestmark = pytest.mark.usefixtures("archive_app")


async def _archives_where(app: FastAPI, **columns: str) -> list[Archive]:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        query = select(Archive)
        for name, value in columns.items():
            query = query.where(getattr(Archive, name) == value)
        return list((await session.exec(query)).all())


async def _wait_for(app: FastAPI, **columns: str) -> Archive:
    async def deposited() -> bool:
        return bool(await _archives_where(app, **columns))

    await wait_until(deposited, wait_seconds=30, what=f"archive with {columns}")
    (archive,) = await _archives_where(app, **columns)
    return archive


def _serve(server: DocumentServer, role: str, media_type: str = "application/pdf") -> Document:
    name = f"{role}-{uuid.uuid4().hex}"
    document = Document(name, f"{role} {uuid.uuid4()}".encode() * 30, role, media_type)
    server.documents[name] = document.content
    return document


async def _seda(
    api: httpx.AsyncClient, tokens: TokenFactory, archive_id: uuid.UUID, which: str
) -> bytes:
    response = await api.get(f"/v1/archives/{archive_id}/{which}", headers=bearer(tokens, SIREN))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return response.content


async def test_an_acknowledged_acte_is_deposited_as_a_seda_transfer_with_its_atr(
    archive_app: FastAPI,
    archive_settings: ArchiveSettings,
    document_server: DocumentServer,
    api: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    documents = [
        _serve(document_server, "acte_tamponne"),
        _serve(document_server, "annexe_1"),
        _serve(document_server, "ar_acte", "application/xml"),
    ]
    data = acknowledged(tuple(document.ref(document_server) for document in documents))
    data = data.model_copy(
        update={
            "departement": "035",
            "type_piece": "99_DE",
            "annexes": (
                AnnexeInfo(position=1, type_piece="41_NC", role="annexe_1", filename="a.pdf"),
            ),
        }
    )

    await publish(archive_settings, data)
    archive = await _wait_for(archive_app, acte_id=data.acte_id)

    assert (archive.source_kind, archive.seda_version) == ("acte", "2.1")
    root, version = parse(await _seda(api, tokens, archive.id, "manifest"))
    assert version is SedaVersion.V2_1
    assert validation_errors(root, version) == ()
    ns = {"s": version.namespace, "k": KANOL_NS}
    assert root.findtext("s:MessageIdentifier", namespaces=ns) == archive.message_identifier
    assert root.findtext(".//s:OriginatingAgencyArchiveUnitIdentifier", namespaces=ns) == (
        data.acte_id
    )
    assert root.findtext(".//k:IdentifiantActe", namespaces=ns) == data.identifiant_acte
    digests = [d.text for d in root.iterfind(".//s:BinaryDataObject/s:MessageDigest", ns)]
    assert digests == [hashlib.sha512(document.content).hexdigest() for document in documents]

    reply, reply_version = parse(await _seda(api, tokens, archive.id, "reply"))
    assert validation_errors(reply, reply_version) == ()
    assert reply.findtext("s:ReplyCode", namespaces=ns) == "OK"
    assert reply.findtext("s:MessageRequestIdentifier", namespaces=ns) == (
        archive.message_identifier
    )

    async def announced() -> ArchiveDeposited | None:
        records = await read_topic(
            archive_settings.kafka_bootstrap,
            f"{archive_settings.kafka_topic_prefix}archive.events",
            count=1_000,
            wait_seconds=3,
        )
        for record in records:
            event = decode(header_map(record.headers), record.value).data
            if isinstance(event, ArchiveDeposited) and event.archive_id == str(archive.id):
                return event
        return None

    await wait_until(announced, wait_seconds=20, what="ArchiveDeposited of the acte")
    deposited = await announced()
    assert deposited is not None
    assert deposited.reply_identifier == archive.reply_identifier
    assert deposited.reply_url == f"/v1/archives/{archive.id}/reply"
    assert deposited.manifest_url == f"/v1/archives/{archive.id}/manifest"


async def test_the_same_acte_announced_by_two_events_makes_one_archive(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    document = _serve(document_server, "acte")
    data = acknowledged((document.ref(document_server),))

    first = await publish(archive_settings, data)
    await _wait_for(archive_app, acte_id=data.acte_id)
    # actes-pes publishing the acknowledgement again, as a new event with a new id.
    again = CloudEvent.new(data, source="actes-pes", subject=data.acte_id, tenant=data.siren)
    await publish_again(archive_settings, again)
    marker = acknowledged((_serve(document_server, "acte").ref(document_server),))
    await publish(archive_settings, marker)
    await _wait_for(archive_app, acte_id=marker.acte_id)

    (archive,) = await _archives_where(archive_app, acte_id=data.acte_id)
    assert archive.source_event_id == first.id
    assert document_server.requests[document.name] == 1


async def test_an_acknowledged_pes_flow_is_deposited_with_its_acquit(
    archive_app: FastAPI,
    archive_settings: ArchiveSettings,
    document_server: DocumentServer,
    api: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    flow_xml = _serve(document_server, "pes_aller", "application/xml")
    acquit_xml = _serve(document_server, "pes_acquit", "application/xml")
    flow = PesFlowAcknowledged(
        flow_id=str(uuid.uuid4()),
        siren=SIREN,
        id_coll=f"{SIREN}00013",
        nom_fic=f"PESALR2_{SIREN}_{uuid.uuid4().hex[:6]}.xml",
        cod_col="001",
        cod_bud="01",
        id_post="035001",
        date_ack=date(2024, 3, 13),
        acknowledged_at=datetime.now(UTC),
        documents=(flow_xml.ref(document_server), acquit_xml.ref(document_server)),
    )
    event = CloudEvent.new(flow, source="actes-pes", subject=flow.flow_id, tenant=flow.siren)

    await publish_again(archive_settings, event)
    archive = await _wait_for(archive_app, pes_flow_id=flow.flow_id)

    assert (archive.source_kind, archive.siren) == ("pes_flow", SIREN)
    root, version = parse(await _seda(api, tokens, archive.id, "manifest"))
    ns = {"s": version.namespace, "k": KANOL_NS}
    assert root.findtext(".//k:NomFic", namespaces=ns) == flow.nom_fic
    assert root.findtext(".//s:AppraisalRule/s:FinalAction", namespaces=ns) == "Destroy"
    filenames = [f.text for f in root.iterfind(".//s:FileInfo/s:Filename", ns)]
    assert filenames == [
        flow_xml.ref(document_server).filename,
        acquit_xml.ref(document_server).filename,
    ]


async def test_a_pes_flow_announced_for_another_tenant_is_parked_without_an_archive(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    flow_xml = _serve(document_server, "pes_aller", "application/xml")
    flow = PesFlowAcknowledged(
        flow_id=str(uuid.uuid4()),
        siren=SIREN,
        id_coll=f"{SIREN}00013",
        nom_fic="PESALR2_spoofed.xml",
        cod_col="001",
        cod_bud="01",
        id_post="035001",
        date_ack=date(2024, 3, 13),
        acknowledged_at=datetime.now(UTC),
        documents=(flow_xml.ref(document_server),),
    )
    event = CloudEvent.new(flow, source="actes-pes", subject=flow.flow_id, tenant=OTHER_SIREN)

    await publish_again(archive_settings, event)

    records = await read_topic(
        archive_settings.kafka_bootstrap,
        f"{archive_settings.kafka_topic_prefix}{GROUP_ID}.dlq",
        count=1_000,
        wait_seconds=30,
    )
    parked = [r for r in records if header_map(r.headers).get(H_ID) == event.id]
    assert len(parked) == 1
    assert "is not the SIREN" in header_map(parked[0].headers)[H_ERROR]
    assert await _archives_where(archive_app, pes_flow_id=flow.flow_id) == []
    assert document_server.requests[flow_xml.name] == 0
