"""The archive's logbook: every operation in one hash chain that cannot be altered unnoticed.

Each entry holds its sequence, time, operation, organisation, archive, actor, outcome and
details, the previous entry's hash and its own: SHA-256 over a canonical serialisation of
all of these. Changing, removing or inserting an entry breaks every hash after it; the head
(last sequence and hash) is published on ``archive.events`` from time to time, so a history
rewritten in full, hashes included, still disagrees with what was published outside the
database.

Appends are serialised so that the chain stays linear: on PostgreSQL a transaction-scoped
advisory lock is taken before reading the head, and held until the caller commits; SQLite
has a single writer. The caller's transaction carries the entry, so it commits with the
operation it reports, or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, Column, DateTime, text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common import outbox
from kanol_common.db import Database, as_utc
from kanol_common.envelope import H_TYPE
from kanol_common.events.archive import LogbookSealed
from kanol_common.logging import get_logger

log = get_logger(__name__)

GENESIS_HASH: Final = "0" * 64
# Any constant 64-bit key: only the logbook's appends take this advisory lock.
_APPEND_LOCK_KEY: Final = 0x4B414E4F4C4C4F47  # "KANOLLOG"
_VERIFY_PAGE: Final = 1000


class Operation:
    """The operations the logbook records, as they appear in its ``operation`` column."""

    DEPOSITED: Final = "archive.deposited"
    TRANSFER_REFUSED: Final = "transfer.refused"
    ARCHIVE_READ: Final = "archive.read"
    ARCHIVES_SEARCHED: Final = "archive.searched"
    OBJECT_DOWNLOADED: Final = "object.downloaded"
    SEDA_DOCUMENT_DOWNLOADED: Final = "seda_document.downloaded"
    AUDIT_COMPLETED: Final = "audit.completed"
    INTEGRITY_FAILED: Final = "audit.integrity_failed"
    RULE_CHANGED: Final = "retention.rule_changed"
    ELIMINATION_PROPOSED: Final = "elimination.proposed"
    ELIMINATION_APPROVED: Final = "elimination.approved"
    ELIMINATION_REFUSED: Final = "elimination.refused"
    ARCHIVE_DESTROYED: Final = "archive.destroyed"
    ORPHANS_COLLECTED: Final = "storage.orphans_collected"


class LogbookEntry(SQLModel, table=True):
    __tablename__ = "logbook_entry"

    sequence: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False),
        description="1, 2, 3...: no gap, no repeat",
    )
    recorded_at: datetime = Field(sa_type=DateTime(timezone=True))
    operation: str = Field(max_length=64)
    outcome: str = Field(max_length=16, description="OK, KO or WARNING")
    siren: str | None = Field(default=None, max_length=9, index=True)
    archive_id: str | None = Field(default=None, max_length=64, index=True)
    actor: str | None = Field(default=None, max_length=255, description="client or agent")
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    previous_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


def canonical_bytes(
    *,
    sequence: int,
    recorded_at: datetime,
    operation: str,
    outcome: str,
    siren: str | None,
    archive_id: str | None,
    actor: str | None,
    details: Mapping[str, Any],
    previous_hash: str,
) -> bytes:
    """The bytes an entry's hash covers: sorted-key compact JSON, UTC time to the µs."""
    document = {
        "sequence": sequence,
        "recorded_at": as_utc(recorded_at).isoformat(timespec="microseconds"),
        "operation": operation,
        "outcome": outcome,
        "siren": siren,
        "archive_id": archive_id,
        "actor": actor,
        "details": details,
        "previous_hash": previous_hash,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_hash(entry: LogbookEntry) -> str:
    """The hash ``entry`` should carry, recomputed from its fields."""
    return hashlib.sha256(
        canonical_bytes(
            sequence=entry.sequence,
            recorded_at=entry.recorded_at,
            operation=entry.operation,
            outcome=entry.outcome,
            siren=entry.siren,
            archive_id=entry.archive_id,
            actor=entry.actor,
            details=entry.details,
            previous_hash=entry.previous_hash,
        )
    ).hexdigest()


async def append(
    session: AsyncSession,
    *,
    operation: str,
    siren: str | None,
    archive_id: str | None = None,
    actor: str | None = None,
    outcome: str = "OK",
    details: Mapping[str, Any] | None = None,
) -> LogbookEntry:
    """Chain a new entry after the head, in the caller's transaction (the caller commits).

    ``details`` must be JSON-serialisable; values JSON cannot carry (dates, UUIDs) are
    written as strings, and what is stored is exactly what is hashed.
    """
    # Round trip through JSON so the stored details are the hashed ones, whatever the
    # database's JSON type gives back.
    stored_details = json.loads(json.dumps(dict(details or {}), default=str, allow_nan=False))

    await _lock_appends(session)
    head = await _head(session)
    previous_sequence, previous_hash = head if head is not None else (0, GENESIS_HASH)

    entry = LogbookEntry(
        sequence=previous_sequence + 1,
        recorded_at=datetime.now(UTC),
        operation=operation,
        outcome=outcome,
        siren=siren,
        archive_id=archive_id,
        actor=actor,
        details=stored_details,
        previous_hash=previous_hash,
        hash="",
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    await session.flush()
    return entry


class Logbook:
    """The logbook as the deposit path's journal (``seda.journal.DepositJournal``)."""

    async def record(
        self,
        session: AsyncSession,
        *,
        operation: str,
        outcome: str,
        tenant: str,
        archive_id: str | None,
        detail: Mapping[str, object],
        actor: str | None = None,
    ) -> None:
        await append(
            session,
            operation=operation,
            siren=tenant,
            archive_id=archive_id,
            actor=actor,
            outcome=outcome,
            details=detail,
        )


async def head(session: AsyncSession) -> tuple[int, str] | None:
    """The last entry's sequence and hash, or ``None`` for an empty logbook."""
    return await _head(session)


async def _head(session: AsyncSession) -> tuple[int, str] | None:
    result = await session.exec(
        select(LogbookEntry.sequence, LogbookEntry.hash)
        .order_by(col(LogbookEntry.sequence).desc())
        .limit(1)
    )
    row = result.first()
    return None if row is None else (int(row[0]), str(row[1]))


async def _lock_appends(session: AsyncSession) -> None:
    """Hold the right to append until the session's transaction ends, so that no other
    transaction reads the same head: the chain stays linear and no append fails."""
    if session.get_bind().dialect.name == "postgresql":
        await session.exec(  # type: ignore[call-overload]
            text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=_APPEND_LOCK_KEY)
        )
        return
    # SQLite: take its single write lock before the head is read (a write that changes
    # nothing does; it waits busy_timeout for another writer), so that the head read is the
    # latest and nobody commits another entry before this transaction ends.
    await session.exec(  # type: ignore[call-overload]
        text("UPDATE logbook_entry SET sequence = sequence WHERE 0 = 1")
    )


async def entries(session: AsyncSession, *, after: int = 0) -> AsyncIterator[LogbookEntry]:
    """Every entry after sequence ``after``, in order, read page by page."""
    while True:
        result = await session.exec(
            select(LogbookEntry)
            .where(col(LogbookEntry.sequence) > after)
            .order_by(col(LogbookEntry.sequence))
            .limit(_VERIFY_PAGE)
        )
        page = list(result.all())
        if not page:
            return
        for entry in page:
            yield entry
        after = page[-1].sequence
        session.expunge_all()


@dataclass(frozen=True)
class BrokenEntry:
    sequence: int
    reason: str


@dataclass
class ChainReport:
    """What a verification found: the entries checked, the head, the first break if any."""

    checked: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    first_broken: BrokenEntry | None = None
    published_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.first_broken is None and not self.problems


async def verify(
    session: AsyncSession, published_heads: Mapping[int, str] | None = None
) -> ChainReport:
    """Recompute every hash and link; compare with heads published outside the database.

    The first broken entry is reported with why: its hash does not match its content, it
    does not point at the previous hash, or a sequence is missing. A published head whose
    sequence is beyond the chain or whose hash differs from the entry's shows a history
    rewritten in full.
    """
    published = dict(published_heads or {})
    report = ChainReport()
    expected_previous, expected_sequence = GENESIS_HASH, 1

    async for entry in entries(session):
        report.checked += 1
        broken = _break_in(entry, expected_sequence, expected_previous)
        if broken is not None and report.first_broken is None:
            report.first_broken = BrokenEntry(entry.sequence, broken)
        if entry.sequence in published:
            report.published_checked += 1
            if published.pop(entry.sequence) != entry.hash:
                report.problems.append(
                    f"entry {entry.sequence}: its hash differs from the published head"
                )
        expected_previous, expected_sequence = entry.hash, entry.sequence + 1
        report.head_sequence, report.head_hash = entry.sequence, entry.hash

    for sequence in sorted(published):
        report.problems.append(f"published head {sequence} is missing from the logbook")
    return report


def _break_in(entry: LogbookEntry, expected_sequence: int, expected_previous: str) -> str | None:
    if entry.sequence != expected_sequence:
        return f"sequence {expected_sequence} is missing"
    if entry.previous_hash != expected_previous:
        return "previous_hash does not match the previous entry's hash"
    if entry_hash(entry) != entry.hash:
        return "hash does not match the entry's content"
    return None


# -- published heads --------------------------------------------------------------------


class LogbookSeal(SQLModel, table=True):
    """A head of the chain as it was published on ``archive.events``."""

    __tablename__ = "logbook_seal"

    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(max_length=64)
    sealed_at: datetime = Field(sa_type=DateTime(timezone=True))


async def seal(session: AsyncSession, *, tenant: str) -> LogbookSeal | None:
    """Publish the head (outbox, in the caller's transaction) unless it already was.

    ``tenant`` is the event's tenant: the archive's own identifier, as the logbook spans
    every organisation. ``None`` when the logbook is empty or its head was published.
    """
    current = await _head(session)
    if current is None:
        return None
    sequence, hash_ = current
    if await session.get(LogbookSeal, sequence) is not None:
        return None

    sealed = LogbookSeal(sequence=sequence, hash=hash_, sealed_at=datetime.now(UTC))
    session.add(sealed)
    outbox.publish(
        session,
        LogbookSealed(sequence=sequence, hash=hash_, sealed_at=sealed.sealed_at),
        subject="logbook",
        tenant=tenant,
    )
    log.info("logbook.sealed", sequence=sequence, hash=hash_)
    return sealed


async def keep_sealing(database: Database, *, period_seconds: float, tenant: str) -> None:
    """The background task: publish the head at start, then every ``period_seconds``
    while it changes."""
    while True:
        try:
            async with database.session() as session:
                await seal(session, tenant=tenant)
                await session.commit()
        except Exception:  # the next period tries again
            log.warning("logbook.seal_failed", exc_info=True)
        await asyncio.sleep(period_seconds)


async def published_heads(
    bootstrap: str, topic: str, *, timeout_seconds: float = 10.0
) -> dict[int, str]:
    """Every head published on ``topic`` (the physical ``archive.events``), read from its
    beginning without a consumer group: what the outside world saw of the chain."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    heads: dict[int, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    try:
        # Without a group, subscribing assigns every partition once the metadata is known.
        while not consumer.assignment():
            if loop.time() > deadline:
                return heads  # the topic does not exist: nothing was ever published
            await consumer.getmany(timeout_ms=200)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while not await _caught_up(consumer, ends):
            if loop.time() > deadline:
                raise TimeoutError(f"Reading {topic} took more than {timeout_seconds} s.")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    _remember_head(heads, record.headers, record.value)
    finally:
        await consumer.stop()
    return heads


async def _caught_up(consumer: Any, ends: Mapping[Any, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def _remember_head(
    heads: dict[int, str], headers: Sequence[tuple[str, bytes]], value: bytes | None
) -> None:
    event_type = dict(headers).get(H_TYPE)
    if event_type is None or event_type.decode() != LogbookSealed.event_type or value is None:
        return
    sealed = LogbookSealed.model_validate_json(value)
    heads[sealed.sequence] = sealed.hash
