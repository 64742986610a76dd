"""The integrity audit: every stored object read back and its fingerprints recomputed.

For each archive not destroyed, each object's content is hashed again (SHA-256, its
address, and SHA-512, as recorded at deposit) and its size compared; the SEDA manifest and
the ATR are checked against their SHA-256. A difference becomes an ``audit_finding`` row, a
logbook entry and an ``ArchiveIntegrityFailed`` event on ``archive.events``.

A run goes through the archives in id order and commits its position after each batch, so
a run stopped for any reason resumes where it was (``audit_run.after_archive_id``). Reads
are paced to a rate in MB/s, so that an audit does not starve the deposits of disk or
network bandwidth.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

import anyio
from sqlalchemy import BigInteger, DateTime, func
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive import logbook, retention
from kanol_archive.logbook import Operation
from kanol_archive.models import Archive, ArchiveObject
from kanol_common import outbox
from kanol_common.db import Database
from kanol_common.events.archive import ArchiveIntegrityFailed
from kanol_common.logging import get_logger
from kanol_common.storage import CHUNK_SIZE, LocalObjectStore, ObjectNotFound, ObjectStore

log = get_logger(__name__)

MB: Final = 1_000_000
BATCH_SIZE: Final = 50


class Problem:
    MISSING: Final = "missing"
    SHA256_DIFFERS: Final = "sha256_differs"
    SHA512_DIFFERS: Final = "sha512_differs"
    SIZE_DIFFERS: Final = "size_differs"


class AuditRun(SQLModel, table=True):
    __tablename__ = "audit_run"

    id: uuid.UUID = Field(primary_key=True)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    after_archive_id: uuid.UUID | None = Field(
        default=None, description="The last archive checked: a resumed run starts after it"
    )
    objects_checked: int = Field(default=0, sa_type=BigInteger)
    bytes_checked: int = Field(default=0, sa_type=BigInteger)
    failures: int = 0


class AuditFinding(SQLModel, table=True):
    __tablename__ = "audit_finding"

    id: uuid.UUID = Field(primary_key=True)
    run_id: uuid.UUID = Field(foreign_key="audit_run.id", index=True)
    archive_id: uuid.UUID
    siren: str = Field(max_length=9)
    document: str = Field(max_length=16, description="object, manifest or reply")
    sha256: str = Field(max_length=64)
    problem: str = Field(max_length=32)
    found_sha256: str | None = Field(default=None, max_length=64)
    found_sha512: str | None = Field(default=None, max_length=128)
    found_at: datetime = Field(sa_type=DateTime(timezone=True))


class AuditProgress(Protocol):
    """What a progress display needs: the bytes to read, then each chunk read."""

    def start(self, total_bytes: int, done_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


class RateLimit:
    """Paces reads to ``mb_per_second`` (decimal MB) over the whole run; ``None``: no limit."""

    def __init__(
        self,
        mb_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.bytes_per_second = None if not mb_per_second else mb_per_second * MB
        self._clock, self._sleep = clock, sleep
        self._started = clock()
        self._spent = 0

    async def spend(self, nbytes: int) -> None:
        if self.bytes_per_second is None:
            return
        self._spent += nbytes
        ahead = self._spent / self.bytes_per_second - (self._clock() - self._started)
        if ahead > 0:
            await self._sleep(ahead)


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    sha512: str
    size: int


async def fingerprint(
    store: ObjectStore, key: str, limit: RateLimit, progress: AuditProgress | None = None
) -> Fingerprint | None:
    """The SHA-256, SHA-512 and size of the stored content, or ``None`` when it is missing."""
    if isinstance(store, LocalObjectStore):
        return await _fingerprint_file(store, key, limit, progress)
    sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
    try:
        async for chunk in store.open_chunks(key):
            # hashlib releases the GIL on large buffers: the loop stays free meanwhile.
            await anyio.to_thread.run_sync(_update_both, sha256, sha512, chunk)
            size += len(chunk)
            await limit.spend(len(chunk))
            if progress is not None:
                progress.advance(len(chunk))
    except ObjectNotFound:
        return None
    return Fingerprint(sha256.hexdigest(), sha512.hexdigest(), size)


# A local file is hashed in slices of this size per worker-thread call: one call for most
# documents, and the rate limit still applies within a large one.
_FILE_SLICE = 8 * 1024 * 1024


async def _fingerprint_file(
    store: LocalObjectStore, key: str, limit: RateLimit, progress: AuditProgress | None
) -> Fingerprint | None:
    try:
        path = store.path_of(key)
    except ObjectNotFound:
        return None
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    slice_ = _Slice(path, sha256, sha512)
    try:
        size, more = 0, True
        while more:
            read, more = await anyio.to_thread.run_sync(slice_.next)
            size += read
            await limit.spend(read)
            if progress is not None:
                progress.advance(read)
    except FileNotFoundError:
        return None
    finally:
        slice_.close()
    return Fingerprint(sha256.hexdigest(), sha512.hexdigest(), size)


class _Slice:
    """Blocking: a file read and hashed one slice per call, opened by the first call and
    closed by the last, so that a small document costs one worker-thread call."""

    def __init__(self, path: Path, sha256: Any, sha512: Any) -> None:
        self.path, self.sha256, self.sha512 = path, sha256, sha512
        self.file: BinaryIO | None = None

    def next(self) -> tuple[int, bool]:
        """The bytes read and whether there is more to read."""
        if self.file is None:
            self.file = self.path.open("rb")
        read = 0
        while read < _FILE_SLICE:
            chunk = self.file.read(CHUNK_SIZE)
            if not chunk:
                self.close()
                return read, False
            _update_both(self.sha256, self.sha512, chunk)
            read += len(chunk)
        return read, True

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _update_both(sha256: Any, sha512: Any, chunk: bytes) -> None:
    sha256.update(chunk)
    sha512.update(chunk)


@dataclass(frozen=True)
class Finding:
    archive: Archive
    document: str
    sha256: str
    sha512: str | None
    problem: str
    found: Fingerprint | None


async def run_audit(
    database: Database,
    store: ObjectStore,
    *,
    rate_mb_per_second: float | None = None,
    progress: AuditProgress | None = None,
    restart: bool = False,
    batch_size: int = BATCH_SIZE,
) -> AuditRun:
    """Audit every archive, resuming the unfinished run unless ``restart``; return the run."""
    limit = RateLimit(rate_mb_per_second)
    run = await _current_run(database, restart=restart)
    if progress is not None:
        async with database.session() as session:
            progress.start(await _total_bytes(session), run.bytes_checked)
    log.info("audit.started", run_id=str(run.id), after=str(run.after_archive_id))

    while True:
        async with database.session() as session:
            batch = await _next_archives(session, run.after_archive_id, batch_size)
            if not batch:
                break
            objects = await _objects_of(session, [archive.id for archive in batch])
            for archive in batch:
                findings = await _check_archive(
                    store, archive, objects.get(archive.id, []), limit, progress, run
                )
                for finding in findings:
                    await _report(session, run, finding)
            run.after_archive_id = batch[-1].id
            session.add(run)
            await session.commit()

    async with database.session() as session:
        run.finished_at = datetime.now(UTC)
        session.add(run)
        await logbook.append(
            session,
            operation=Operation.AUDIT_COMPLETED,
            siren=None,
            actor="archive.audit",
            outcome="OK" if run.failures == 0 else "KO",
            details={
                "run_id": str(run.id),
                "objects_checked": run.objects_checked,
                "bytes_checked": run.bytes_checked,
                "failures": run.failures,
            },
        )
        await session.commit()
    log.info(
        "audit.completed",
        run_id=str(run.id),
        objects=run.objects_checked,
        bytes=run.bytes_checked,
        failures=run.failures,
    )
    return run


async def _current_run(database: Database, *, restart: bool) -> AuditRun:
    async with database.session() as session:
        unfinished = (
            await session.exec(
                select(AuditRun)
                .where(col(AuditRun.finished_at).is_(None))
                .order_by(col(AuditRun.started_at).desc())
            )
        ).first()
        if unfinished is not None and not restart:
            return unfinished
        if unfinished is not None:
            # A new run replaces the unfinished one, which stays as it stopped.
            unfinished.finished_at = datetime.now(UTC)
            session.add(unfinished)
        run = AuditRun(id=uuid.uuid4(), started_at=datetime.now(UTC))
        session.add(run)
        await session.commit()
        return run


async def _total_bytes(session: AsyncSession) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(ArchiveObject.size), 0))
        .join(Archive, col(Archive.id) == col(ArchiveObject.archive_id))
        .where(retention.not_destroyed())
    )
    return int(total or 0)


async def _next_archives(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> list[Archive]:
    query = select(Archive).where(retention.not_destroyed())
    if after is not None:
        query = query.where(col(Archive.id) > after)
    result = await session.exec(query.order_by(col(Archive.id)).limit(limit))
    return list(result.all())


async def _objects_of(
    session: AsyncSession, archive_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ArchiveObject]]:
    result = await session.exec(
        select(ArchiveObject)
        .where(col(ArchiveObject.archive_id).in_(archive_ids))
        .order_by(col(ArchiveObject.archive_id), col(ArchiveObject.position))
    )
    objects: dict[uuid.UUID, list[ArchiveObject]] = {}
    for item in result.all():
        objects.setdefault(item.archive_id, []).append(item)
    return objects


async def _check_archive(
    store: ObjectStore,
    archive: Archive,
    objects: Sequence[ArchiveObject],
    limit: RateLimit,
    progress: AuditProgress | None,
    run: AuditRun,
) -> list[Finding]:
    findings = []
    for item in objects:
        found = await fingerprint(store, item.storage_key, limit, progress)
        run.objects_checked += 1
        run.bytes_checked += found.size if found else 0
        problem = _object_problem(item, found)
        if problem is not None:
            findings.append(Finding(archive, "object", item.sha256, item.sha512, problem, found))

    for document, sha256 in (
        ("manifest", archive.manifest_sha256),
        ("reply", archive.reply_sha256),
    ):
        if sha256 is None:
            continue
        found = await fingerprint(store, sha256, limit)
        run.objects_checked += 1
        if found is None:
            findings.append(Finding(archive, document, sha256, None, Problem.MISSING, None))
        elif found.sha256 != sha256:
            findings.append(Finding(archive, document, sha256, None, Problem.SHA256_DIFFERS, found))
    return findings


def _object_problem(item: ArchiveObject, found: Fingerprint | None) -> str | None:
    if found is None:
        return Problem.MISSING
    if found.sha256 != item.sha256:
        return Problem.SHA256_DIFFERS
    if found.sha512 != item.sha512:
        return Problem.SHA512_DIFFERS
    if found.size != item.size:
        return Problem.SIZE_DIFFERS
    return None


async def _report(session: AsyncSession, run: AuditRun, finding: Finding) -> None:
    """Record the finding, log it in the logbook and publish it, in one transaction."""
    now = datetime.now(UTC)
    archive = finding.archive
    run.failures += 1
    session.add(
        AuditFinding(
            id=uuid.uuid4(),
            run_id=run.id,
            archive_id=archive.id,
            siren=archive.siren,
            document=finding.document,
            sha256=finding.sha256,
            problem=finding.problem,
            found_sha256=finding.found.sha256 if finding.found else None,
            found_sha512=finding.found.sha512 if finding.found else None,
            found_at=now,
        )
    )
    await logbook.append(
        session,
        operation=Operation.INTEGRITY_FAILED,
        siren=archive.siren,
        archive_id=str(archive.id),
        actor="archive.audit",
        outcome="KO",
        details={
            "run_id": str(run.id),
            "document": finding.document,
            "sha256": finding.sha256,
            "problem": finding.problem,
            "found_sha256": finding.found.sha256 if finding.found else None,
        },
    )
    outbox.publish(
        session,
        ArchiveIntegrityFailed(
            archive_id=str(archive.id),
            siren=archive.siren,
            document=finding.document,
            sha256=finding.sha256,
            sha512=finding.sha512,
            problem=finding.problem,
            audit_run_id=str(run.id),
            found_at=now,
        ),
        subject=str(archive.id),
        tenant=archive.siren,
    )
    log.error(
        "audit.integrity_failed",
        archive_id=str(archive.id),
        tenant=archive.siren,
        document=finding.document,
        sha256=finding.sha256,
        problem=finding.problem,
    )


async def findings_of(session: AsyncSession, run_id: uuid.UUID) -> list[AuditFinding]:
    result = await session.exec(
        select(AuditFinding)
        .where(AuditFinding.run_id == run_id)
        .order_by(col(AuditFinding.found_at))
    )
    return list(result.all())
