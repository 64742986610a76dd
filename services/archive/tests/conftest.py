"""archive running for real: PostgreSQL, Kafka under a topic prefix of its own, a document
server on loopback standing for actes-pes and identity."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from kanol_archive.app import MIGRATIONS_DIR, create_app
from kanol_archive.documents import FetchedDocument
from kanol_archive.repository import ArchiveRepository
from kanol_archive.service import ArchiveService, Deposit
from kanol_archive.settings import ArchiveSettings
from kanol_common.db import Database, upgrade_to_head
from kanol_common.envelope import CloudEvent
from kanol_common.events import DocumentRef
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import produce_raw
from kanol_common.testing.organisations import seed_organisation

from .document_server import DocumentServer, running_document_server

SIREN = "213502388"
OTHER_SIREN = "222200001"
ARCHIVE_CLIENT_ID = "archive-test"
ARCHIVE_CLIENT_SECRET = "archive-test-secret"


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="module")
def document_server(tokens: TokenFactory) -> Iterator[DocumentServer]:
    server = DocumentServer(tokens, ARCHIVE_CLIENT_ID, ARCHIVE_CLIENT_SECRET)
    with running_document_server(server) as running:
        yield running


@pytest.fixture(scope="module")
def archive_settings(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    document_server: DocumentServer,
    tokens: TokenFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> ArchiveSettings:
    return ArchiveSettings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("archive"),
        database_url=postgres_database("archive"),
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=f"test-{uuid.uuid4().hex[:10]}.",
        identity_url=document_server.url,
        trusted_document_origins=[document_server.url],
        token_issuer=tokens.issuer,
        token_audience=tokens.audience,
        archive_client_id=ARCHIVE_CLIENT_ID,
        archive_client_secret=ARCHIVE_CLIENT_SECRET,
        document_fetch_timeout_seconds=5.0,
        outbox_poll_seconds=0.2,
        consumer_poll_ms=100,
        consumer_handler_attempts=3,
        consumer_retry_backoff_seconds=0.05,
        consumer_retry_delay_seconds=0.3,
        consumer_max_attempts=6,
        kafka_start_timeout_seconds=10.0,
    )


@pytest.fixture(scope="module")
async def archive_app(
    archive_settings: ArchiveSettings, tokens: TokenFactory
) -> AsyncIterator[FastAPI]:
    app = create_app(archive_settings)
    app.state.token_verifier = tokens.verifier()
    async with app.router.lifespan_context(app):
        runtime: ServiceRuntime = app.state.runtime
        # The organisations tests work for, subscribed to every service (identity's projection).
        for siren in (SIREN, OTHER_SIREN):
            await seed_organisation(runtime.database, siren)
        await runtime.wait_assigned()
        yield app


@pytest.fixture(scope="module")
async def api(archive_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=archive_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://archive.test") as client:
        yield client


def bearer(tokens: TokenFactory, siren: str, scopes: str = "archive:read") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(siren, scopes)}"}


@dataclass
class Document:
    name: str
    content: bytes
    role: str = "acte"
    media_type: str = "application/pdf"

    def ref(self, server: DocumentServer, *, sha256: str | None = None) -> DocumentRef:
        return DocumentRef(
            role=self.role,
            uri=server.uri(self.name),
            sha256=sha256 or hashlib.sha256(self.content).hexdigest(),
            size=len(self.content),
            media_type=self.media_type,
            filename=f"{self.name}.pdf",
        )


def acknowledged(
    refs: tuple[DocumentRef, ...], *, siren: str = SIREN, numero: str | None = None
) -> ActeAcknowledged:
    numero = numero or f"T_{uuid.uuid4().hex[:8].upper()}"
    return ActeAcknowledged(
        acte_id=str(uuid.uuid4()),
        siren=siren,
        identifiant_acte=f"035-{siren}-20240312-{numero}-DE",
        numero_interne=numero,
        nature=1,
        matiere="7.1",
        objet=f"Budget primitif {numero}",
        date_decision=date(2024, 3, 12),
        date_reception=date(2024, 3, 13),
        acknowledged_at=datetime.now(UTC),
        documents=refs,
    )


async def publish(settings: ArchiveSettings, data: ActeAcknowledged) -> CloudEvent:
    """Put the event on actes.events as actes-pes's relay would: CloudEvents binary mode."""
    event = CloudEvent.new(data, source="actes-pes", subject=data.acte_id, tenant=data.siren)
    await publish_again(settings, event)
    return event


async def publish_again(settings: ArchiveSettings, event: CloudEvent) -> None:
    await produce_raw(
        settings.kafka_bootstrap,
        f"{settings.kafka_topic_prefix}{event.topic}",
        event.kafka_value(),
        key=event.kafka_key(),
        headers=event.kafka_headers(),
    )


def object_path(settings: ArchiveSettings, sha256: str) -> Path:
    return settings.objects_dir() / sha256[:2] / sha256[2:4] / sha256


Depositor = Callable[..., Awaitable[Deposit]]


@pytest.fixture
def make_archive(archive_app: FastAPI, document_server: DocumentServer) -> Depositor:
    """Makes an archive as the consumer would, through the service, without the broker.

    ``make_archive(siren, *contents, nature=1, objet=None, date_decision=None)``: the first
    content is the acte, the second its ARActe.
    """

    async def make(
        siren: str = SIREN,
        *contents: bytes,
        nature: int = 1,
        objet: str | None = None,
        date_decision: date | None = None,
    ) -> Deposit:
        documents = [
            Document(f"doc-{uuid.uuid4().hex}", content, role=role)
            for content, role in zip(
                contents or (b"%PDF-1.7 acte",), ("acte", "ar_acte"), strict=False
            )
        ]
        refs = tuple(document.ref(document_server) for document in documents)
        data = acknowledged(refs, siren=siren)
        changes: dict[str, object] = {"nature": nature}
        if objet is not None:
            changes["objet"] = objet
        if date_decision is not None:
            changes["date_decision"] = date_decision
        data = data.model_copy(update=changes)
        source = CloudEvent.new(data, source="actes-pes", subject=data.acte_id, tenant=siren)
        fetched = [
            FetchedDocument(ref, io.BytesIO(document.content))
            for ref, document in zip(refs, documents, strict=True)
        ]
        runtime: ServiceRuntime = archive_app.state.runtime
        async with runtime.database.session() as session:
            service = ArchiveService(ArchiveRepository(session), archive_app.state.object_store)
            made = await service.deposit_acte(data, source, fetched)
            await session.commit()
        assert made is not None
        return made

    return make


@pytest.fixture
async def empty_database(postgres_database: Callable[[str], str]) -> AsyncIterator[Database]:
    """A migrated archive database of its own, empty, so that its logbook starts at 1."""
    url = postgres_database("archive_empty")
    await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, url)
    database = Database(url)
    yield database
    await database.dispose()
