"""archive's FastAPI app: the read API, and the consumer that deposits acknowledged actes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from kanol_archive import routes, transfers
from kanol_archive.consumers import build_consumer
from kanol_archive.documents import DOCUMENTS_SCOPE, DocumentFetcher
from kanol_archive.seda.schema import load_schemas
from kanol_archive.settings import ArchiveSettings
from kanol_common.auth import ServiceTokenProvider
from kanol_common.http import create_app as create_service_app
from kanol_common.organisations import build_organisation_consumer
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import LocalObjectStore

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: ArchiveSettings | None = None) -> FastAPI:
    settings = settings or ArchiveSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS_DIR)
    store = LocalObjectStore(settings.objects_dir())
    tokens = ServiceTokenProvider(
        settings, settings.archive_client_id, settings.archive_client_secret, [DOCUMENTS_SCOPE]
    )
    fetcher = DocumentFetcher(
        tokens,
        timeout=settings.document_fetch_timeout_seconds,
        max_bytes=settings.max_document_bytes,
        trusted_origins=settings.trusted_document_origins,
    )
    build_consumer(runtime, fetcher, store, archival_agency=settings.archival_agency_identifier)
    # identity's organisations and subscriptions, for require_subscription on the routes.
    build_organisation_consumer(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The fetcher opens first and closes last: the consumer uses it until it stops.
        await fetcher.open()
        # The SEDA schemas take a few tenths of a second to compile: before the first
        # request or deposit rather than during it.
        await load_schemas()
        try:
            async with runtime.lifespan(app):
                yield
        finally:
            await fetcher.close()

    app = create_service_app(
        settings,
        title="Kanol archive",
        description="The regional electronic archive: archives, their objects and fingerprints.",
        routers=[routes.router, transfers.router],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.object_store = store
    app.state.document_fetcher = fetcher
    return app
