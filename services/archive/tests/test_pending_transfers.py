"""POST /v1/transfers with ``Prefer: respond-async``: a ZIP answered 202 at once, checked
afterwards, its ATR kept for the sender; multipart stays synchronous."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kanol_archive import pending
from kanol_archive.models import CHECKING, DONE, PendingTransfer
from kanol_archive.pending import PendingTransfers
from kanol_archive.settings import ArchiveSettings
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import ObjectStore
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import wait_until

from .conftest import OTHER_SIREN, SIREN, bearer
from .seda_samples import description, manifest, with_digest, zip_package
from .test_transfers import SCOPES, _count_archives, _files, _message_id, _reply

pytestmark = pytest.mark.usefixtures("archive_app")

ASYNC = {"Prefer": "respond-async", "Content-Type": "application/zip"}


async def _post_async(
    api: httpx.AsyncClient, tokens: TokenFactory, body: bytes, **headers: str
) -> httpx.Response:
    sent = {**bearer(tokens, SIREN, SCOPES), **ASYNC, **headers}
    return await api.post("/v1/transfers", content=body, headers=sent)


async def _done(api: httpx.AsyncClient, tokens: TokenFactory, location: str) -> dict[str, Any]:
    status: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal status
        response = await api.get(location, headers=bearer(tokens, SIREN, SCOPES))
        assert response.status_code == 200, response.text
        status = response.json()
        return status["state"] == DONE

    await wait_until(finished, wait_seconds=20, what="the pending transfer checked")
    return status


async def _package_gone(store: ObjectStore, sha256: str) -> None:
    """The package leaves the store once checked: just after the check's commit."""

    async def gone() -> bool:
        return not await store.exists(sha256)

    await wait_until(gone, wait_seconds=10, what="the checked package removed")


async def test_a_zip_is_answered_202_then_archived_with_its_atr_kept(
    archive_app: FastAPI,
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_settings: ArchiveSettings,
) -> None:
    files = _files()
    sent = manifest(description(files, siren=SIREN, message_identifier=_message_id()))

    accepted = await _post_async(api, tokens, zip_package(sent, files))

    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["preference-applied"] == "respond-async"
    location = accepted.headers["location"]
    assert location.startswith("/v1/transfers/pending/")
    status = await _done(api, tokens, location)
    assert status["status"] == 201 and status["archive_id"]
    reply = await api.get(status["reply_url"], headers=bearer(tokens, SIREN, SCOPES))
    assert _reply(reply)[0] == "OK"
    archived = await api.get(f"/v1/archives/{status['archive_id']}", headers=bearer(tokens, SIREN))
    assert archived.status_code == 200
    row = await _row(archive_app, uuid.UUID(location.rsplit("/")[-1]))
    store: ObjectStore = archive_app.state.object_store
    await _package_gone(store, row.package_sha256)
    assert [
        p for p in archive_settings.spool_dir().iterdir() if p.name.startswith("pending-")
    ] == []


async def test_a_bad_package_is_refused_afterwards_with_every_reason(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    described = with_digest(description(files, siren=SIREN), 0, "0" * 128)
    before = await _count_archives(archive_app)

    accepted = await _post_async(api, tokens, zip_package(manifest(described), files))
    status = await _done(api, tokens, accepted.headers["location"])

    assert status["status"] == 422 and "archive_id" not in status
    reply = await api.get(status["reply_url"], headers=bearer(tokens, SIREN, SCOPES))
    code, events, _ = _reply(reply)
    assert code == "KO"
    assert any(type_code == "CHECK_DIGEST" and outcome == "KO" for type_code, outcome, _ in events)
    assert await _count_archives(archive_app) == before


async def test_not_a_zip_is_refused_afterwards(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    accepted = await _post_async(api, tokens, b"this is no ZIP at all")
    status = await _done(api, tokens, accepted.headers["location"])

    assert status["status"] == 422
    reply = await api.get(status["reply_url"], headers=bearer(tokens, SIREN, SCOPES))
    assert "not a usable ZIP" in reply.text


async def test_the_same_key_answers_the_same_202(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    described = description(files, siren=SIREN, message_identifier=_message_id())
    body = zip_package(manifest(described), files)
    key = uuid.uuid4().hex

    once = await _post_async(api, tokens, body, **{"Idempotency-Key": key})
    twice = await _post_async(api, tokens, body, **{"Idempotency-Key": key})

    assert once.status_code == twice.status_code == 202
    assert twice.headers["location"] == once.headers["location"]
    assert twice.headers["idempotency-replayed"] == "true"
    assert (await _done(api, tokens, once.headers["location"]))["status"] == 201


async def test_another_organisation_sees_no_pending_transfer(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    accepted = await _post_async(
        api, tokens, zip_package(manifest(description(files, siren=SIREN)), files)
    )
    location = accepted.headers["location"]

    theirs = await api.get(location, headers=bearer(tokens, OTHER_SIREN, SCOPES))
    their_reply = await api.get(f"{location}/reply", headers=bearer(tokens, OTHER_SIREN, SCOPES))

    assert theirs.status_code == their_reply.status_code == 404
    assert theirs.json()["type"].endswith("/pending-transfer-not-found")


async def test_multipart_stays_synchronous(api: httpx.AsyncClient, tokens: TokenFactory) -> None:
    files = _files()
    sent = manifest(description(files, siren=SIREN, message_identifier=_message_id()))
    parts = [("manifest", ("manifest.xml", sent, "application/xml"))]
    parts += [("file", (path, content, "application/pdf")) for path, content in files.items()]

    response = await api.post(
        "/v1/transfers",
        files=parts,
        headers={**bearer(tokens, SIREN, SCOPES), "Prefer": "respond-async"},
    )

    assert response.status_code == 201, response.text
    assert "preference-applied" not in response.headers


async def _row(app: FastAPI, pending_id: uuid.UUID) -> PendingTransfer:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        row = await session.get(PendingTransfer, pending_id)
    assert row is not None
    return row


async def _left_by_a_stopped_replica(app: FastAPI, package_sha256: str) -> uuid.UUID:
    """A row claimed long ago by a replica that stopped while checking it."""
    long_ago = datetime.now(UTC) - pending.LEASE - timedelta(seconds=1)
    row = PendingTransfer(
        siren=SIREN,
        client_id="ged-sync",
        state=CHECKING,
        received_at=long_ago,
        claimed_at=long_ago,
        package_sha256=package_sha256,
    )
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        session.add(row)
        await session.commit()
    worker: PendingTransfers = app.state.pending_transfers
    worker.wake()
    return row.id


async def test_a_transfer_left_by_a_stopped_replica_is_taken_up(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    described = description(files, siren=SIREN, message_identifier=_message_id())
    store: ObjectStore = archive_app.state.object_store
    package = await store.put(zip_package(manifest(described), files))

    pending_id = await _left_by_a_stopped_replica(archive_app, package.sha256)

    status = await _done(api, tokens, f"/v1/transfers/pending/{pending_id}")
    assert status["status"] == 201
    await _package_gone(store, package.sha256)


async def test_a_package_lost_meanwhile_is_refused_with_a_reason(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    pending_id = await _left_by_a_stopped_replica(archive_app, "0" * 64)

    status = await _done(api, tokens, f"/v1/transfers/pending/{pending_id}")

    assert status["status"] == 422
    reply = await api.get(status["reply_url"], headers=bearer(tokens, SIREN, SCOPES))
    assert "send it again" in reply.text


async def test_finished_transfers_are_forgotten_after_their_keeping_time(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    sent = manifest(description(files, siren=SIREN, message_identifier=_message_id()))
    accepted_location = (await _post_async(api, tokens, zip_package(sent, files))).headers[
        "location"
    ]
    refused_location = (await _post_async(api, tokens, b"no ZIP, refused")).headers["location"]
    accepted = await _done(api, tokens, accepted_location)
    refused = await _done(api, tokens, refused_location)
    locations = (accepted_location, refused_location)
    rows = [await _row(archive_app, uuid.UUID(where.rsplit("/")[-1])) for where in locations]
    worker: PendingTransfers = archive_app.state.pending_transfers
    store: ObjectStore = archive_app.state.object_store

    assert await worker.forget_finished() == 0  # finished just now: kept
    runtime: ServiceRuntime = archive_app.state.runtime
    async with runtime.database.session() as session:
        for row in rows:
            row.finished_at = datetime.now(UTC) - worker.keep_finished - timedelta(minutes=1)
            session.add(row)
        await session.commit()
    forgotten = await worker.forget_finished()

    assert forgotten == 2
    for location in locations:
        gone = await api.get(location, headers=bearer(tokens, SIREN, SCOPES))
        assert gone.status_code == 404
    assert rows[0].reply_sha256 and rows[1].reply_sha256
    assert not await store.exists(rows[1].reply_sha256)  # the KO reply of nothing archived
    assert await store.exists(rows[0].reply_sha256)  # the ATR stays with its archive
    atr = await api.get(
        f"/v1/archives/{accepted['archive_id']}/reply", headers=bearer(tokens, SIREN)
    )
    assert atr.status_code == 200 and refused["status"] == 422
