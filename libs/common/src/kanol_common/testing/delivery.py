"""Helpers for tests that move events through a real broker and a real database.

- :class:`Probe`: an event type of tests only, kept out of the published catalog.
- :data:`effects_table` and :func:`record_effect` / :func:`count_effects`: a tiny table a
  handler writes to, to count how many times an effect happened.
- :func:`create_delivery_schema`: the outbox and inbox tables (through the same migration
  code the services run) plus the effects table.
- :func:`delivery_settings`: settings with a unique topic prefix and short timings.
- :func:`read_topic` / :func:`produce_raw`: a plain aiokafka consumer and producer, to look
  at a topic or put a hand-made record on it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Connection
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.db import Database
from kanol_common.events.base import EVENT_TYPES, EventData
from kanol_common.migrations import create_delivery_tables
from kanol_common.settings import CommonSettings

PROBE_TOPIC = "testing.probes"


class Probe(EventData):
    """An event of tests: ``probe_id`` names what a test looks for."""

    event_type = "fr.kanol.testing.probe.recorded.v1"
    topic = PROBE_TOPIC

    probe_id: str
    value: int = 0


class OtherProbe(EventData):
    """A second test event type, for consumers that must skip types they do not handle."""

    event_type = "fr.kanol.testing.probe.ignored.v1"
    topic = PROBE_TOPIC

    probe_id: str


# Test events stay out of the catalog that contract tests export.
EVENT_TYPES.pop(Probe.event_type, None)
EVENT_TYPES.pop(OtherProbe.event_type, None)

effects_metadata = MetaData()
effects_table = Table(
    "kanol_test_effect",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("probe_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
)


async def create_delivery_schema(database: Database) -> None:
    """Create the delivery tables with the services' migration code, and the effects table."""

    def create(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            create_delivery_tables()
        effects_metadata.create_all(connection)

    async with database.engine.begin() as connection:
        await connection.run_sync(create)


async def record_effect(session: AsyncSession, probe: Probe, event_id: str, attempt: int) -> None:
    await session.exec(
        insert(effects_table).values(probe_id=probe.probe_id, event_id=event_id, attempt=attempt)
    )


async def count_effects(database: Database, probe_id: str | None = None) -> int:
    query = select(func.count()).select_from(effects_table)
    if probe_id is not None:
        query = query.where(effects_table.c.probe_id == probe_id)
    async with database.engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def count_rows(database: Database, table: str) -> int:
    query = select(func.count()).select_from(Table(table, MetaData()))
    async with database.engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def delivery_settings(
    kafka_bootstrap: str, database_url: str, *, prefix: str | None = None, **overrides: Any
) -> CommonSettings:
    """Settings for one test: its own topic prefix, fast polls, short retries."""
    values: dict[str, Any] = {
        "service_name": "kanol-test",
        "environment": "test",
        "database_url": database_url,
        "run_migrations": False,
        "kafka_bootstrap": kafka_bootstrap,
        "kafka_topic_prefix": prefix or unique_prefix(),
        "outbox_poll_seconds": 0.2,
        "consumer_poll_ms": 100,
        "consumer_handler_attempts": 3,
        "consumer_retry_backoff_seconds": 0.05,
        "consumer_retry_delay_seconds": 0.3,
        "consumer_max_attempts": 6,
        "kafka_start_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return CommonSettings(**values)


async def read_topic(
    kafka_bootstrap: str, topic: str, *, count: int, wait_seconds: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of a physical topic (all partitions), or fewer at timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + wait_seconds
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def produce_raw(
    kafka_bootstrap: str,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: Iterable[tuple[str, bytes]] = (),
) -> None:
    """Put one hand-made record on a physical topic."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=list(headers))
    finally:
        await producer.stop()


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    wait_seconds: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; TimeoutError after the wait."""
    deadline = time.monotonic() + wait_seconds
    while True:
        outcome = predicate()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {wait_seconds}s")
        await asyncio.sleep(interval)
