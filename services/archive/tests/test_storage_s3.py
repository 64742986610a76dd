"""archive with KANOL_STORAGE=s3 on a real SeaweedFS: deposits land in the bucket, come
back byte for byte, are audited there, and an approved elimination removes them from it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date

import httpx
import pytest
from fastapi import FastAPI

from kanol_archive import retention
from kanol_archive.audit import run_audit
from kanol_archive.settings import ArchiveSettings
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import S3Location, S3ObjectStore
from kanol_common.testing.auth import TokenFactory

from .conftest import SIREN, Depositor, bearer
from .document_server import DocumentServer


@pytest.fixture(scope="module")
async def archive_settings(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    document_server: DocumentServer,
    tokens: TokenFactory,
    tmp_path_factory: pytest.TempPathFactory,
    s3_location: S3Location,
) -> AsyncIterator[ArchiveSettings]:
    """The module's archive on S3: a bucket of its own, created before the service starts."""
    location = replace(s3_location, bucket=f"archive-{uuid.uuid4().hex[:12]}")
    bucket = S3ObjectStore(location)
    await bucket.ensure_bucket()
    await bucket.close()
    yield ArchiveSettings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("archive-s3"),
        database_url=postgres_database("archive_s3"),
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=f"test-{uuid.uuid4().hex[:10]}.",
        identity_url=document_server.url,
        trusted_document_origins=[document_server.url],
        token_issuer=tokens.issuer,
        token_audience=tokens.audience,
        archive_client_id="archive-test",
        archive_client_secret="archive-test-secret",
        storage="s3",
        s3_endpoint_url=location.endpoint_url,
        s3_bucket=location.bucket,
        s3_access_key_id=location.access_key_id,
        s3_secret_access_key=location.secret_access_key,
    )


def _store(app: FastAPI) -> S3ObjectStore:
    store = app.state.object_store
    assert isinstance(store, S3ObjectStore)
    return store


async def test_a_deposit_is_stored_in_the_bucket_and_read_back(
    api: httpx.AsyncClient, tokens: TokenFactory, archive_app: FastAPI, make_archive: Depositor
) -> None:
    content = b"%PDF-1.7 " + uuid.uuid4().bytes * 1000
    deposit = await make_archive(SIREN, content)
    sha256 = hashlib.sha256(content).hexdigest()
    store = _store(archive_app)

    downloaded = await api.get(
        f"/v1/archives/{deposit.archive.id}/objects/{sha256}", headers=bearer(tokens, SIREN)
    )
    manifest = await api.get(
        f"/v1/archives/{deposit.archive.id}/manifest", headers=bearer(tokens, SIREN)
    )

    assert downloaded.status_code == 200 and downloaded.content == content
    assert await store.sha512_of(sha256) == hashlib.sha512(content).hexdigest()
    assert manifest.status_code == 200
    assert deposit.archive.manifest_sha256 is not None
    assert await store.exists(deposit.archive.manifest_sha256)


async def test_the_audit_reads_the_bucket_and_an_elimination_empties_it(
    archive_app: FastAPI, make_archive: Depositor
) -> None:
    content = b"%PDF contrat " + uuid.uuid4().bytes
    await make_archive(SIREN, content, nature=4, date_decision=date(2010, 1, 5))
    sha256 = hashlib.sha256(content).hexdigest()
    runtime: ServiceRuntime = archive_app.state.runtime
    store = _store(archive_app)

    audited = await run_audit(runtime.database, store, restart=True)
    proposals = await retention.sweep(runtime.database, store)
    async with runtime.database.session() as session:
        await retention.approve(session, proposals[0].id, SIREN, actor="archivist", reason="échu")
        await session.commit()
        removed = await retention.remove_destroyed_objects(session, store)
        await session.commit()

    assert audited.failures == 0
    assert audited.bytes_checked > len(content)
    assert removed == 1
    assert not await store.exists(sha256)
