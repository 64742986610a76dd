"""Transactional outbox: events are written with the change they report, then relayed.

A service calls :func:`publish` inside the transaction that changes its state; the row
commits or rolls back with that change. The :class:`OutboxRelay` (one asyncio task in the
service's process) sends unpublished rows in id order with an idempotent producer, waits
for the broker's acknowledgements, then marks them published. A crash between the send and
the mark sends the rows again: consumers recognise the duplicates by event id (inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import BigInteger, delete, event, func, select, text, update
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.db import Database
from kanol_common.delivery_models import OutboxMessage, inbox_table, outbox_table, unnest_array
from kanol_common.envelope import H_TYPE, CloudEvent, encode_headers
from kanol_common.events.base import EventData
from kanol_common.logging import get_logger
from kanol_common.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG
from kanol_common.settings import CommonSettings

log = get_logger(__name__)

# Keys in ``Session.info``: the event source (service name) the runtime gives its sessions,
# and a mark that the transaction wrote outbox rows, so its commit wakes the relays.
SESSION_SOURCE = "kanol.source"
_SESSION_PENDING = "kanol.outbox_pending"

_default_source = "kanol"

AfterSend = Callable[[Sequence[int]], Awaitable[None]]


def set_default_source(source: str) -> None:
    """The ``ce_source`` of events published from sessions the runtime did not make."""
    global _default_source
    _default_source = source


def publish(session: AsyncSession, data: EventData, *, subject: str, tenant: str) -> CloudEvent:
    """Add ``data`` to the outbox in the caller's open transaction; the caller commits.

    ``subject`` is the aggregate id (the record key: one aggregate's events stay in order),
    ``tenant`` the organisation's SIREN. The current trace context is stored with the row,
    so the relay publishes it with the request's trace. Plain function: no ``await``.
    """
    source = session.info.get(SESSION_SOURCE) or _default_source
    cloud_event = CloudEvent.new(data, source=source, subject=subject, tenant=tenant)

    session.add(
        OutboxMessage(
            event_id=cloud_event.id,
            topic=data.topic,
            key=cloud_event.subject,
            headers=cloud_event.text_headers(),
            payload=cloud_event.kafka_value(),
            created_at=cloud_event.time,
        )
    )
    session.info[_SESSION_PENDING] = True
    return cloud_event


async def backlog(database: Database) -> int:
    """How many outbox rows wait to be published."""
    async with database.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.published_at.is_(None))
        )
    return int(count or 0)


# Every running relay of the process; a commit that wrote outbox rows wakes them all (a
# relay with nothing to do finds no row and sleeps again).
_wakers: set[Callable[[], None]] = set()


def _after_commit(session: Session) -> None:
    if not session.info.pop(_SESSION_PENDING, False):
        return
    for wake in list(_wakers):
        wake()


def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_PENDING, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)


# The PostgreSQL advisory lock a relay holds while it publishes a batch ("kanolout" as a
# 64-bit integer). Advisory locks are per database, and each service has its own.
RELAY_LOCK_KEY = int.from_bytes(b"kanolout", "big")
# How soon a relay that found another replica publishing looks again.
RELAY_BUSY_RETRY_SECONDS = 0.05


class OutboxRelay:
    """Publishes the outbox of one database; wakes on commit, polls as a fallback.

    Batches go out one at a time, in the order of the outbox, each acknowledged by Kafka
    before the next is claimed, so one aggregate's events reach their partition in the
    order they were written. On PostgreSQL the replicas of a service each run a relay; the
    one holding the advisory lock :data:`RELAY_LOCK_KEY` publishes, the others look again
    shortly (any of them takes over when it stops). On SQLite a single relay runs per
    database file.
    """

    def __init__(
        self,
        database: Database,
        producer: AIOKafkaProducer,
        settings: CommonSettings,
        *,
        after_send: AfterSend | None = None,
    ) -> None:
        """``after_send`` runs once a batch is acknowledged and before it is marked
        published: fault-injection tests use it to kill the relay at that point."""
        self.database = database
        self.producer = producer
        self.settings = settings
        self.after_send = after_send
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_gauge = 0.0
        self._last_cleanup = time.monotonic()
        # Set when another replica's relay held the lock at the last try.
        self.busy_elsewhere = False

    def physical_topic(self, topic: str) -> str:
        return f"{self.settings.kafka_topic_prefix}{topic}"

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        _wakers.add(self.wake)
        self._task = asyncio.create_task(self._run(), name="kanol-outbox-relay")
        self.wake()

    async def stop(self, *, flush: bool = True) -> None:
        """Stop the relay; with ``flush`` it first publishes what is committed."""
        _wakers.discard(self.wake)
        task, self._task = self._task, None
        if task is None:
            return
        if not flush:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return

        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(task, timeout=self.settings.kafka_start_timeout_seconds)
        except TimeoutError:
            log.warning("outbox.stop_timed_out")

    def wake(self) -> None:
        """Ask the relay to look at the outbox now; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.settings.outbox_poll_seconds)
            self._wakeup.clear()

            try:
                await self.publish_pending()
                await self._housekeeping()
                if self.busy_elsewhere and not self._stopping:
                    # What this replica committed is published by the other relay or by
                    # this one once the lock is free: look again soon, not at the next poll.
                    await asyncio.sleep(RELAY_BUSY_RETRY_SECONDS)
                    self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The broker or the database is away: the rows stay, the next turn retries.
                log.warning("outbox.publish_failed", error=f"{type(exc).__name__}: {exc}")
                if not self._stopping:
                    await asyncio.sleep(min(self.settings.outbox_poll_seconds, 1.0))
            if self._stopping:
                return

    async def publish_pending(self) -> int:
        """Publish every committed row, batch after batch; the number published."""
        total = 0
        while True:
            published = await self._publish_batch()
            total += published
            if published < self.settings.outbox_batch_size:
                return total

    async def _publish_batch(self) -> int:
        if self.database.is_sqlite:
            # SQLite has one writer: read, send, then mark in a short write transaction,
            # rather than hold a transaction open across the broker round trip.
            async with self.database.session() as session:
                rows = await self._claim(session)
            if not rows:
                return 0
            await self._send(rows)
            async with self.database.session() as session:
                await self._mark(session, rows)
                await session.commit()
            return len(rows)

        async with self.database.session() as session:
            if not await self._lock(session):
                await session.rollback()
                return 0
            rows = await self._claim(session)
            if not rows:
                await session.rollback()
                return 0
            await self._send(rows)
            await self._mark(session, rows)
            await session.commit()
        return len(rows)

    async def _lock(self, session: AsyncSession) -> bool:
        """Take the relay lock for this transaction; False when another relay holds it."""
        connection = await session.connection()
        statement = text("SELECT pg_try_advisory_xact_lock(:key)")
        locked = bool((await connection.execute(statement, {"key": RELAY_LOCK_KEY})).scalar())
        self.busy_elsewhere = not locked
        return locked

    async def _claim(self, session: AsyncSession) -> Sequence[Any]:
        columns = outbox_table.c
        query = (
            select(columns.id, columns.topic, columns.key, columns.headers, columns.payload)
            .where(columns.published_at.is_(None))
            .order_by(columns.id)
            .limit(self.settings.outbox_batch_size)
            .with_for_update(skip_locked=True)
        )
        connection = await session.connection()
        result = await connection.execute(query)
        return result.all()

    async def _send(self, rows: Sequence[Any]) -> None:
        deliveries = []
        for row in rows:
            headers: dict[str, str] = row.headers
            delivery = await self.producer.send(
                self.physical_topic(row.topic),
                value=row.payload,
                key=row.key.encode(),
                headers=encode_headers(headers),
            )
            deliveries.append(delivery)
        await asyncio.gather(*deliveries)

        published = Counter((row.topic, row.headers.get(H_TYPE, "")) for row in rows)
        for (topic, event_type), count in published.items():
            EVENTS_PUBLISHED.labels(topic, event_type).inc(count)
        if self.after_send is not None:
            await self.after_send([row.id for row in rows])

    async def _mark(self, session: AsyncSession, rows: Sequence[Any]) -> None:
        ids = [row.id for row in rows]
        statement = update(outbox_table).values(published_at=datetime.now(UTC))
        if self.database.is_postgres:
            # One array parameter joined on the key: the same statement whatever the batch
            # size, planned as key lookups.
            claimed = unnest_array("claimed_ids", ids, BigInteger())
            statement = statement.where(outbox_table.c.id == claimed.c.value)
        else:
            statement = statement.where(outbox_table.c.id.in_(ids))
        await session.exec(statement)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_gauge >= self.settings.outbox_poll_seconds:
            self._last_gauge = now
            OUTBOX_BACKLOG.set(await backlog(self.database))
        if now - self._last_cleanup >= self.settings.delivery_cleanup_interval_seconds:
            self._last_cleanup = now
            await cleanup(self.database, self.settings)


async def cleanup(database: Database, settings: CommonSettings) -> tuple[int, int]:
    """Delete outbox rows published and inbox rows handled longer ago than the retention."""
    now = datetime.now(UTC)
    async with database.session() as session:
        outbox_cutoff = now - timedelta(hours=settings.outbox_retention_hours)
        outbox_result = await session.exec(
            delete(outbox_table).where(outbox_table.c.published_at < outbox_cutoff)
        )
        inbox_deleted = 0
        if settings.inbox_retention_hours > 0:
            inbox_cutoff = now - timedelta(hours=settings.inbox_retention_hours)
            inbox_result = await session.exec(
                delete(inbox_table).where(inbox_table.c.handled_at < inbox_cutoff)
            )
            inbox_deleted = int(getattr(inbox_result, "rowcount", 0) or 0)
        await session.commit()

    outbox_deleted = int(getattr(outbox_result, "rowcount", 0) or 0)
    if outbox_deleted or inbox_deleted:
        log.info("delivery.cleaned", outbox_rows=outbox_deleted, inbox_rows=inbox_deleted)
    return outbox_deleted, inbox_deleted
