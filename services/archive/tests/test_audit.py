"""The audit reads every stored object back: a flipped byte, a missing file or a changed
recorded fingerprint is found, logged, published; an interrupted run resumes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import func, text
from sqlmodel import col, select

from kanol_archive import logbook
from kanol_archive.__main__ import main
from kanol_archive.audit import AuditRun, Problem, findings_of, run_audit
from kanol_archive.logbook import LogbookEntry, Operation
from kanol_archive.models import Archive, ArchiveObject
from kanol_archive.settings import ArchiveSettings
from kanol_common.db import Database
from kanol_common.delivery_models import OutboxMessage
from kanol_common.events.archive import ArchiveIntegrityFailed
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import S3Location, S3ObjectStore

from .conftest import SIREN, Depositor, object_path

_SET_SHA512 = (
    "UPDATE archive_object SET sha512 = :sha512 WHERE archive_id = :id AND role = 'ar_acte'"
)


def _database(app: FastAPI) -> Database:
    runtime: ServiceRuntime = app.state.runtime
    return runtime.database


def _flip_first_byte(settings: ArchiveSettings, sha256: str) -> bytes:
    path = object_path(settings, sha256)
    original = path.read_bytes()
    path.write_bytes(bytes([original[0] ^ 0x01]) + original[1:])
    return original


async def test_a_flipped_byte_is_found_logged_and_published(
    archive_app: FastAPI, archive_settings: ArchiveSettings, make_archive: Depositor
) -> None:
    content = b"%PDF-1.7 " + uuid.uuid4().bytes
    deposit = await make_archive(SIREN, content)
    sha256 = hashlib.sha256(content).hexdigest()
    original = _flip_first_byte(archive_settings, sha256)
    database = _database(archive_app)

    try:
        run = await run_audit(database, archive_app.state.object_store, restart=True)
    finally:
        object_path(archive_settings, sha256).write_bytes(original)

    assert run.finished_at is not None
    async with database.session() as session:
        findings = await findings_of(session, run.id)
        entries = (
            await session.exec(
                select(LogbookEntry).where(
                    LogbookEntry.operation == Operation.INTEGRITY_FAILED,
                    LogbookEntry.archive_id == str(deposit.archive.id),
                )
            )
        ).all()
        events = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.key == str(deposit.archive.id))
            )
        ).all()
    found = [(f.archive_id, f.document, f.sha256, f.problem) for f in findings]
    assert (deposit.archive.id, "object", sha256, Problem.SHA256_DIFFERS) in found
    assert [entry.details["problem"] for entry in entries] == [Problem.SHA256_DIFFERS]
    published = [
        ArchiveIntegrityFailed.model_validate_json(message.payload)
        for message in events
        if dict(message.headers).get("ce_type") == ArchiveIntegrityFailed.event_type
    ]
    assert [(event.sha256, event.problem) for event in published] == [
        (sha256, Problem.SHA256_DIFFERS)
    ]


async def test_a_missing_object_and_a_changed_sha512_are_found(
    archive_app: FastAPI, archive_settings: ArchiveSettings, make_archive: Depositor
) -> None:
    gone, altered = b"%PDF gone " + uuid.uuid4().bytes, b"<ARActe/> " + uuid.uuid4().bytes
    deposit = await make_archive(SIREN, gone, altered)
    gone_sha256 = hashlib.sha256(gone).hexdigest()
    original = object_path(archive_settings, gone_sha256).read_bytes()
    object_path(archive_settings, gone_sha256).unlink()
    database = _database(archive_app)
    async with database.session() as session:
        await session.exec(  # type: ignore[call-overload]
            text(_SET_SHA512).bindparams(sha512="0" * 128, id=deposit.archive.id)
        )
        await session.commit()

    try:
        run = await run_audit(database, archive_app.state.object_store, restart=True)
    finally:
        object_path(archive_settings, gone_sha256).write_bytes(original)
        async with database.session() as session:
            await session.exec(  # type: ignore[call-overload]
                text(_SET_SHA512).bindparams(
                    sha512=hashlib.sha512(altered).hexdigest(), id=deposit.archive.id
                )
            )
            await session.commit()

    async with database.session() as session:
        findings = await findings_of(session, run.id)
    mine = sorted((f.sha256, f.problem) for f in findings if f.archive_id == deposit.archive.id)
    assert mine == sorted(
        [
            (gone_sha256, Problem.MISSING),
            (hashlib.sha256(altered).hexdigest(), Problem.SHA512_DIFFERS),
        ]
    )


class _StopAfter:
    """A progress display that stops the audit after a number of chunks, like a ^C."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks

    def start(self, total_bytes: int, done_bytes: int) -> None:
        return None

    def advance(self, nbytes: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt


async def test_an_interrupted_audit_resumes_where_it_stopped(
    archive_app: FastAPI, make_archive: Depositor
) -> None:
    for number in range(3):
        await make_archive(SIREN, f"%PDF resumable {number} {uuid.uuid4()}".encode())
    database = _database(archive_app)
    store = archive_app.state.object_store

    with pytest.raises(KeyboardInterrupt):
        await run_audit(database, store, restart=True, progress=_StopAfter(2), batch_size=1)
    async with database.session() as session:
        stopped = (
            await session.exec(select(AuditRun).where(col(AuditRun.finished_at).is_(None)))
        ).one()
    resumed = await run_audit(database, store, batch_size=1)

    assert stopped.after_archive_id is not None
    assert resumed.id == stopped.id
    assert resumed.finished_at is not None
    async with database.session() as session:
        objects = await session.scalar(select(func.count()).select_from(ArchiveObject))
        seda = await session.scalar(
            select(func.count(col(Archive.manifest_sha256))).select_from(Archive)
        )
        replies = await session.scalar(
            select(func.count(col(Archive.reply_sha256))).select_from(Archive)
        )
    # Each object once: what the first run committed, then the rest.
    assert resumed.objects_checked == (objects or 0) + (seda or 0) + (replies or 0)


async def test_the_command_reports_and_fails_on_a_finding(
    archive_settings: ArchiveSettings,
    make_archive: Depositor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content = b"%PDF-1.7 command " + uuid.uuid4().bytes
    await make_archive(SIREN, content)
    sha256 = hashlib.sha256(content).hexdigest()
    monkeypatch.setenv("KANOL_DATABASE_URL", archive_settings.resolved_database_url())
    monkeypatch.setenv("KANOL_DATA_DIR", str(archive_settings.data_dir))

    clean = await asyncio.to_thread(main, ["audit", "--restart", "--quiet", "--rate", "0"])
    capsys.readouterr()
    original = _flip_first_byte(archive_settings, sha256)
    try:
        failed = await asyncio.to_thread(main, ["audit", "--restart", "--quiet", "--rate", "500"])
    finally:
        object_path(archive_settings, sha256).write_bytes(original)

    assert clean == 0
    assert failed == 1
    assert f"{sha256}: sha256_differs" in capsys.readouterr().out


async def test_an_object_altered_in_s3_is_found(
    empty_database: Database, s3_location: S3Location
) -> None:
    store = S3ObjectStore(replace(s3_location, bucket=f"audit-{uuid.uuid4().hex[:12]}"))
    await store.ensure_bucket()
    content = b"%PDF-1.7 in a bucket"
    stored = await store.put(content)
    archive = Archive(
        id=uuid.uuid4(),
        siren=SIREN,
        source_event_id=str(uuid.uuid4()),
        source_event_type="test",
        title="Délibération en S3",
        deposited_at=datetime.now(UTC),
    )
    async with empty_database.session() as session:
        session.add(archive)
        await session.flush()
        session.add(
            ArchiveObject(
                id=uuid.uuid4(),
                archive_id=archive.id,
                position=0,
                role="acte",
                filename="acte.pdf",
                media_type="application/pdf",
                size=stored.size,
                sha256=stored.sha256,
                sha512=stored.sha512,
                storage_key=stored.sha256,
            )
        )
        await session.commit()
    s3 = await store.client()
    try:
        clean = await run_audit(empty_database, store)
        # Someone with access to the bucket overwrites the object in place.
        await s3.put_object(
            Bucket=store.location.bucket, Key=store.key_of(stored.sha256), Body=b"%PDF forged"
        )
        altered = await run_audit(empty_database, store)
        async with empty_database.session() as session:
            findings = await findings_of(session, altered.id)
            report = await logbook.verify(session)
    finally:
        await store.close()

    assert clean.failures == 0
    assert clean.bytes_checked == len(content)
    assert [(f.sha256, f.problem) for f in findings] == [(stored.sha256, Problem.SHA256_DIFFERS)]
    assert report.intact
    assert report.checked == 3  # two audits completed, one integrity failure
