"""An acknowledged acte on actes.events becomes one archive, through Kafka and PostgreSQL.

The event is produced as actes-pes's relay produces it (CloudEvents binary mode on the
prefixed topic); the documents come from a real HTTP server on loopback that wants a
token; the archive's own consumer, outbox and relay run in its lifespan.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from sqlmodel import col, func, select

from kanol_archive.consumers import GROUP_ID, build_consumer
from kanol_archive.models import Archive, ArchiveObject
from kanol_archive.settings import ArchiveSettings
from kanol_common.consumer import H_ERROR, H_ORIGINAL_TOPIC
from kanol_common.envelope import decode, header_map
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.archive import ArchiveDeposited
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.delivery import read_topic, wait_until

from .conftest import Document, acknowledged, object_path, publish, publish_again
from .document_server import DocumentServer

pytestmark = pytest.mark.usefixtures("archive_app")


async def _archives_of(app: FastAPI, acte_id: str) -> list[Archive]:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        result = await session.exec(select(Archive).where(Archive.acte_id == acte_id))
        return list(result.all())


async def _objects_of(app: FastAPI, archive_id: uuid.UUID) -> list[ArchiveObject]:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        result = await session.exec(
            select(ArchiveObject)
            .where(ArchiveObject.archive_id == archive_id)
            .order_by(col(ArchiveObject.position))
        )
        return list(result.all())


async def _count_archives(app: FastAPI) -> int:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        return int((await session.exec(select(func.count()).select_from(Archive))).one())


async def _wait_for_archive(app: FastAPI, acte_id: str) -> Archive:
    async def deposited() -> bool:
        return bool(await _archives_of(app, acte_id))

    await wait_until(deposited, wait_seconds=30, what=f"archive of acte {acte_id}")
    (archive,) = await _archives_of(app, acte_id)
    return archive


async def _deposited_events(settings: ArchiveSettings, count: int) -> list[ArchiveDeposited]:
    records = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.kafka_topic_prefix}archive.events",
        count=count,
        wait_seconds=15,
    )
    events = [decode(header_map(record.headers), record.value) for record in records]
    return [event.data for event in events if isinstance(event.data, ArchiveDeposited)]


def _documents(server: DocumentServer, *names: str) -> list[Document]:
    documents = [
        Document(name, f"%PDF-1.7 {name} {uuid.uuid4()}".encode() * 50, role=role)
        for name, role in zip(names, ("acte", "ar_acte", "annexe"), strict=False)
    ]
    for document in documents:
        server.documents[document.name] = document.content
    return documents


async def test_an_acknowledged_acte_is_deposited_with_its_fingerprints(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    acte_pdf, ar_xml = _documents(
        document_server, f"acte-{uuid.uuid4().hex}", "ar-" + uuid.uuid4().hex
    )
    data = acknowledged((acte_pdf.ref(document_server), ar_xml.ref(document_server)))

    event = await publish(archive_settings, data)
    archive = await _wait_for_archive(archive_app, data.acte_id)

    assert archive.siren == data.siren
    assert archive.source_event_id == event.id
    assert archive.source_event_type == ActeAcknowledged.event_type
    assert archive.identifiant_acte == data.identifiant_acte
    assert (archive.title, archive.nature, archive.matiere) == (data.objet, 1, "7.1")
    assert archive.date_decision == data.date_decision

    objects = await _objects_of(archive_app, archive.id)
    assert [(item.role, item.filename) for item in objects] == [
        ("acte", acte_pdf.ref(document_server).filename),
        ("ar_acte", ar_xml.ref(document_server).filename),
    ]
    for item, document in zip(objects, (acte_pdf, ar_xml), strict=True):
        on_disk = object_path(archive_settings, item.sha256).read_bytes()
        assert on_disk == document.content
        assert item.sha512 == hashlib.sha512(on_disk).hexdigest()
        assert item.sha256 == hashlib.sha256(on_disk).hexdigest()
        assert item.size == len(document.content)

    async def announced() -> bool:
        events = await _deposited_events(archive_settings, 1)
        return any(e.archive_id == str(archive.id) for e in events)

    await wait_until(announced, wait_seconds=20, what="ArchiveDeposited on archive.events")
    deposited = next(
        e for e in await _deposited_events(archive_settings, 1) if e.archive_id == str(archive.id)
    )
    assert deposited.source_event_id == event.id
    assert deposited.acte_id == data.acte_id
    assert deposited.object_count == 2
    assert deposited.total_size == len(acte_pdf.content) + len(ar_xml.content)


async def _caught_up(settings: ArchiveSettings, group: str) -> bool:
    """Whether ``group`` has committed every record of actes.events."""
    topic = f"{settings.kafka_topic_prefix}actes.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await reader.start()
    try:
        physical_group = f"{settings.kafka_topic_prefix}{group}"
        committed = await admin.list_consumer_group_offsets(physical_group)
        (description,) = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
        await admin.close()
    return bool(ends) and all(
        end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()
    )


async def _wait_caught_up(settings: ArchiveSettings, group: str) -> None:
    async def caught_up() -> bool:
        return await _caught_up(settings, group)

    await wait_until(caught_up, wait_seconds=30, interval=0.2, what=f"group {group} caught up")


async def test_the_same_event_twice_makes_one_archive(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    (document,) = _documents(document_server, f"twice-{uuid.uuid4().hex}")
    data = acknowledged((document.ref(document_server),))

    event = await publish(archive_settings, data)
    await publish_again(archive_settings, event)
    await _wait_for_archive(archive_app, data.acte_id)
    await _wait_caught_up(archive_settings, GROUP_ID)

    (archive,) = await _archives_of(archive_app, data.acte_id)
    assert document_server.requests[document.name] == 1

    async def announced_once() -> bool:
        events = await _deposited_events(archive_settings, 1_000)
        return [e.archive_id for e in events].count(str(archive.id)) == 1

    await wait_until(announced_once, wait_seconds=20, what="one ArchiveDeposited")


async def test_a_replay_under_another_consumer_group_is_skipped(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    (document,) = _documents(document_server, f"replay-{uuid.uuid4().hex}")
    data = acknowledged((document.ref(document_server),))
    await publish(archive_settings, data)
    await _wait_for_archive(archive_app, data.acte_id)
    await _wait_caught_up(archive_settings, GROUP_ID)
    archives_before = await _count_archives(archive_app)
    fetches_before = document_server.requests.total()

    # A second group reads actes.events from the beginning, through the same handler.
    replay = ServiceRuntime(archive_settings)
    group = f"{GROUP_ID}-replay-{uuid.uuid4().hex[:6]}"
    build_consumer(
        replay, archive_app.state.document_fetcher, archive_app.state.object_store, group_id=group
    )
    async with replay.running():
        await replay.wait_assigned()
        await _wait_caught_up(archive_settings, group)

    assert await _count_archives(archive_app) == archives_before
    assert document_server.requests.total() == fetches_before


async def test_a_transient_failure_of_the_owner_is_retried(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    (document,) = _documents(document_server, f"flaky-{uuid.uuid4().hex}")
    document_server.failures[document.name] = [503, 502]
    data = acknowledged((document.ref(document_server),))

    await publish(archive_settings, data)
    archive = await _wait_for_archive(archive_app, data.acte_id)

    assert document_server.requests[document.name] == 3
    assert len(await _objects_of(archive_app, archive.id)) == 1


async def test_altered_or_missing_documents_go_to_the_dlq_without_an_archive(
    archive_app: FastAPI, archive_settings: ArchiveSettings, document_server: DocumentServer
) -> None:
    (document,) = _documents(document_server, f"altered-{uuid.uuid4().hex}")
    altered = acknowledged((document.ref(document_server, sha256="0" * 64),))
    missing = acknowledged(
        (Document(f"missing-{uuid.uuid4().hex}", b"never").ref(document_server),)
    )

    await publish(archive_settings, altered)
    await publish(archive_settings, missing)

    dlq_topic = f"{archive_settings.kafka_topic_prefix}{GROUP_ID}.dlq"
    records = await read_topic(
        archive_settings.kafka_bootstrap, dlq_topic, count=2, wait_seconds=30
    )
    errors = {
        decode(header_map(record.headers), record.value, ActeAcknowledged).subject: header_map(
            record.headers
        )
        for record in records
    }
    assert set(errors) == {altered.acte_id, missing.acte_id}
    assert "SHA-256" in errors[altered.acte_id][H_ERROR]
    assert errors[altered.acte_id][H_ERROR].startswith("NonRetryableError")
    assert "404" in errors[missing.acte_id][H_ERROR]
    assert errors[missing.acte_id][H_ORIGINAL_TOPIC] == (
        f"{archive_settings.kafka_topic_prefix}actes.events"
    )
    assert await _archives_of(archive_app, altered.acte_id) == []
    assert await _archives_of(archive_app, missing.acte_id) == []
