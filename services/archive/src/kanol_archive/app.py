"""archive's FastAPI app: the read API, and the consumer that deposits acknowledged actes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from kanol_archive import logbook, pending, retention, routes, transfers
from kanol_archive.consumers import build_consumer
from kanol_archive.documents import DOCUMENTS_SCOPE, DocumentFetcher
from kanol_archive.logbook import Logbook
from kanol_archive.pending import PendingTransfers
from kanol_archive.retention import RetentionRules
from kanol_archive.seda.schema import load_schemas
from kanol_archive.settings import ArchiveSettings
from kanol_common.auth import ServiceTokenProvider
from kanol_common.http import create_app as create_service_app
from kanol_common.organisations import build_organisation_consumer
from kanol_common.revocations import RevocationList
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import ObjectStore, object_store

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: ArchiveSettings | None = None) -> FastAPI:
    settings = settings or ArchiveSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS_DIR)
    store = object_store(settings.storage, settings.objects_dir(), settings.s3_location())
    retention_rules = RetentionRules()
    tokens = ServiceTokenProvider(
        settings, settings.archive_client_id, settings.archive_client_secret, [DOCUMENTS_SCOPE]
    )
    fetcher = DocumentFetcher(
        tokens,
        timeout=settings.document_fetch_timeout_seconds,
        max_bytes=settings.max_document_bytes,
        trusted_origins=settings.trusted_document_origins,
    )
    build_consumer(
        runtime,
        fetcher,
        store,
        archival_agency=settings.archival_agency_identifier,
        journal=Logbook(),
        rules=retention_rules,
    )
    # identity's organisations and subscriptions, for require_subscription on the routes.
    build_organisation_consumer(runtime)
    pending_transfers = PendingTransfers(
        runtime.database,
        store,
        settings.spool_dir(),
        transfers.package_check(store, settings, journal=Logbook(), rules=retention_rules),
        keep_finished=timedelta(days=settings.pending_transfer_keep_days),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The fetcher opens first and closes last: the consumer uses it until it stops.
        await fetcher.open()
        # The SEDA schemas take a few tenths of a second to compile: before the first
        # request or deposit rather than during it.
        await load_schemas()
        try:
            async with runtime.lifespan(app):
                async with runtime.database.session() as session:
                    await retention_rules.load(session)
                checking = asyncio.create_task(pending_transfers.run(), name="pending-transfers")
                try:
                    async with _trust_tasks(settings, runtime, store, retention_rules):
                        yield
                finally:
                    checking.cancel()
                    await asyncio.gather(checking, return_exceptions=True)
        finally:
            await fetcher.close()
            await store.close()

    app = create_service_app(
        settings,
        title="Kanol archive",
        description="The regional electronic archive: archives, their objects and fingerprints.",
        routers=[
            routes.router,
            pending.router,
            transfers.router,
            routes.rules_router,
            routes.eliminations_router,
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # Tokens of clients and agents identity cut off are refused from the moment it is known.
    app.state.revocations = RevocationList(runtime.database)
    app.state.object_store = store
    app.state.document_fetcher = fetcher
    app.state.retention_rules = retention_rules
    app.state.logbook = Logbook()
    app.state.pending_transfers = pending_transfers
    return app


@asynccontextmanager
async def _trust_tasks(
    settings: ArchiveSettings,
    runtime: ServiceRuntime,
    store: ObjectStore,
    rules: RetentionRules,
) -> AsyncIterator[None]:
    """The logbook's head published, and due archives proposed, periodically."""
    tasks = []
    if settings.logbook_seal_period_seconds > 0:
        tasks.append(
            asyncio.create_task(
                logbook.keep_sealing(
                    runtime.database,
                    period_seconds=settings.logbook_seal_period_seconds,
                    tenant=settings.archival_agency_identifier,
                )
            )
        )
    if settings.elimination_sweep_period_seconds > 0:
        tasks.append(
            asyncio.create_task(
                retention.keep_sweeping(
                    runtime.database,
                    store,
                    rules,
                    period_seconds=settings.elimination_sweep_period_seconds,
                )
            )
        )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
