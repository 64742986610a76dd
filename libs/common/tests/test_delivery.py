"""Outbox, relay and idempotent consumers on a real broker, on SQLite and on PostgreSQL.

Each test has its own topic prefix and consumer group, so runs on a shared broker do not
see each other's records.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import insert, select, text, update

from kanol_common import outbox
from kanol_common.consumer import EventConsumer, HandlerContext, RetryableError
from kanol_common.db import Database
from kanol_common.delivery_models import inbox_table, outbox_table
from kanol_common.envelope import CloudEvent, decode, header_map
from kanol_common.http import create_app
from kanol_common.outbox import cleanup
from kanol_common.runtime import ServiceRuntime
from kanol_common.settings import CommonSettings
from kanol_common.testing.delivery import (
    PROBE_TOPIC,
    OtherProbe,
    Probe,
    count_effects,
    count_rows,
    create_delivery_schema,
    delivery_settings,
    produce_raw,
    read_topic,
    record_effect,
    wait_until,
)

TENANT = "213502388"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'delivery.sqlite3'}"
    else:
        url = postgres_database("delivery")
    db = Database(url)
    await create_delivery_schema(db)
    yield db
    await db.dispose()


@pytest.fixture
def settings(kafka_bootstrap: str, database: Database) -> CommonSettings:
    return delivery_settings(kafka_bootstrap, database.url)


@pytest.fixture
def group() -> str:
    return f"delivery-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def _publish(database: Database, probe: Probe | OtherProbe, subject: str = "acte-1") -> str:
    async with database.session() as session:
        event = outbox.publish(session, probe, subject=subject, tenant=TENANT)
        await session.commit()
    return event.id


def _probe_consumer(
    runtime: ServiceRuntime, group: str, calls: list[tuple[str, int]], **options: object
) -> EventConsumer:
    consumer = EventConsumer(
        runtime,
        group_id=group,
        topics=[PROBE_TOPIC],
        **options,  # type: ignore[arg-type]
    )

    @consumer.on(Probe)
    async def handle(probe: Probe, ctx: HandlerContext) -> None:
        calls.append((probe.probe_id, ctx.attempt))
        await record_effect(ctx.session, probe, ctx.envelope.id, ctx.attempt)

    return consumer


async def test_published_event_is_handled_once_in_the_publishers_trace(
    settings: CommonSettings, database: Database, group: str, spans: InMemorySpanExporter
) -> None:
    runtime = ServiceRuntime(settings, database=database)
    calls: list[tuple[str, int]] = []
    consumer = _probe_consumer(runtime, group, calls)

    async with runtime.running():
        await consumer.wait_assigned(15)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("request") as request_span:
            trace_id = request_span.get_span_context().trace_id
            await _publish(database, Probe(probe_id="p1"))
        await _publish(database, OtherProbe(probe_id="p2"))

        await wait_until(lambda: consumer.outcomes["ignored"] == 1, what="both consumed")

    assert calls == [("p1", 1)]
    assert await count_effects(database, "p1") == 1
    assert await count_rows(database, "kanol_inbox") == 1
    assert await outbox.backlog(database) == 0
    consume_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    mine = [
        s
        for s in consume_spans
        if s.attributes
        and s.attributes.get("messaging.consumer.group.name") == consumer.physical_group
    ]
    assert len(mine) == 1
    assert mine[0].name == f"consume {settings.kafka_topic_prefix}{PROBE_TOPIC}"
    assert mine[0].context.trace_id == trace_id


async def test_relay_killed_after_sending_publishes_again_and_inbox_applies_once(
    settings: CommonSettings, database: Database, group: str, kafka_bootstrap: str
) -> None:
    event_id = await _publish(database, Probe(probe_id="relay-crash"))
    sent = asyncio.Event()

    async def hang_after_send(ids: Sequence[int]) -> None:
        sent.set()
        await asyncio.Event().wait()  # killed here, between the acks and the mark

    first = ServiceRuntime(settings, database=database, relay_after_send=hang_after_send)
    async with first.running():
        await asyncio.wait_for(sent.wait(), 10)
        assert first.relay is not None
        await first.relay.stop(flush=False)
    assert await outbox.backlog(database) == 1

    second = ServiceRuntime(settings, database=database)
    calls: list[tuple[str, int]] = []
    consumer = _probe_consumer(second, group, calls)
    async with second.running():
        await wait_until(lambda: consumer.outcomes["duplicate"] == 1, what="duplicate seen")

    topic = f"{settings.kafka_topic_prefix}{PROBE_TOPIC}"
    records = await read_topic(kafka_bootstrap, topic, count=2)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [event_id, event_id]
    assert calls == [("relay-crash", 1)]
    assert await count_effects(database, "relay-crash") == 1
    assert await count_rows(database, "kanol_inbox") == 1
    assert await outbox.backlog(database) == 0


class ConsumerKilled(Exception):
    pass


async def test_consumer_killed_before_offset_commit_skips_the_redelivered_event(
    settings: CommonSettings, database: Database, group: str
) -> None:
    calls: list[tuple[str, int]] = []

    async def crash() -> None:
        raise ConsumerKilled

    first = ServiceRuntime(settings, database=database)
    doomed = _probe_consumer(first, group, calls, before_offset_commit=crash)
    async with first.running():
        await _publish(database, Probe(probe_id="consumer-crash"))
        await wait_until(lambda: not doomed.running, what="consumer crashed")
    assert calls == [("consumer-crash", 1)]

    second = ServiceRuntime(settings, database=database)
    consumer = _probe_consumer(second, group, calls)
    async with second.running():
        await wait_until(lambda: consumer.outcomes["duplicate"] == 1, what="redelivery seen")

    assert calls == [("consumer-crash", 1)]
    assert await count_effects(database, "consumer-crash") == 1
    assert await count_rows(database, "kanol_inbox") == 1


async def test_retries_then_retry_topic_then_dlq_and_undecodable_records(
    kafka_bootstrap: str, database: Database, group: str
) -> None:
    settings = delivery_settings(
        kafka_bootstrap,
        database.url,
        consumer_handler_attempts=3,
        consumer_max_attempts=5,
        consumer_retry_delay_seconds=0.8,
    )
    runtime = ServiceRuntime(settings, database=database)
    consumer = EventConsumer(runtime, group_id=group, topics=[PROBE_TOPIC])
    calls: list[tuple[str, int, int]] = []

    @consumer.on(Probe)
    async def handle(probe: Probe, ctx: HandlerContext) -> None:
        calls.append((probe.probe_id, ctx.attempt, int(time.time() * 1000)))
        if probe.probe_id == "flaky" and ctx.attempt < 3:
            raise RetryableError("prefecture answered 503")
        if probe.probe_id == "broken":
            raise RetryableError("archive down")
        await record_effect(ctx.session, probe, ctx.envelope.id, ctx.attempt)

    topic = runtime.topic(PROBE_TOPIC)
    async with runtime.running():
        await consumer.wait_assigned(15)
        await _publish(database, Probe(probe_id="flaky"), subject="flaky")
        broken_id = await _publish(database, Probe(probe_id="broken"), subject="broken")
        good = CloudEvent.new(
            Probe(probe_id="after-garbage"), source="t", subject="g", tenant=TENANT
        )
        await produce_raw(
            kafka_bootstrap, topic, b"{garbage", key=b"g", headers=good.kafka_headers()
        )
        await produce_raw(kafka_bootstrap, topic, b"{}", key=b"g")
        await _publish(database, Probe(probe_id="after-garbage"), subject="g")

        await wait_until(lambda: consumer.outcomes["dlq"] == 3, wait_seconds=20, what="3 in DLQ")

    assert await count_effects(database, "flaky") == 1
    assert [attempt for probe_id, attempt, _ in calls if probe_id == "flaky"] == [1, 2, 3]
    assert await count_effects(database, "after-garbage") == 1
    assert await count_effects(database, "broken") == 0
    assert [attempt for probe_id, attempt, _ in calls if probe_id == "broken"] == [1, 2, 3, 4, 5]

    # The broken event waited on the retry topic until its due time.
    [parked] = await read_topic(kafka_bootstrap, consumer.retry_topic, count=1)
    retry_headers = {name: value.decode() for name, value in parked.headers}
    assert retry_headers["kanol_attempts"] == "3"
    assert retry_headers["ce_id"] == broken_id
    assert retry_headers["kanol_error"] == "RetryableError: archive down"
    due_at = int(retry_headers["kanol_due_at"])
    fourth_try = next(
        at for probe_id, attempt, at in calls if probe_id == "broken" and attempt == 4
    )
    third_try = next(at for probe_id, attempt, at in calls if probe_id == "broken" and attempt == 3)
    assert fourth_try >= due_at >= third_try + 700

    # Then went to the DLQ naming where it came from; the two undecodable records too.
    originals = {
        dict(record.headers).get("ce_id", b"").decode(): record
        for record in await read_topic(kafka_bootstrap, topic, count=5)
    }
    letters = await read_topic(kafka_bootstrap, consumer.dlq_topic, count=3)
    by_error = {dict(r.headers)["kanol_error"].decode().split(":")[0]: r for r in letters}
    assert set(by_error) == {"RetryableError", "UndecodableEvent"} and len(letters) == 3

    dead = {name: value.decode() for name, value in by_error["RetryableError"].headers}
    assert dead["ce_id"] == broken_id
    assert dead["kanol_original_topic"] == topic
    assert dead["kanol_original_partition"] == str(originals[broken_id].partition)
    assert dead["kanol_original_offset"] == str(originals[broken_id].offset)
    assert dead["kanol_error"] == "RetryableError: archive down"
    assert dead["kanol_attempts"] == "5"
    assert dead["kanol_group"] == group
    assert dead["kanol_failed_at"].endswith("Z")
    undecodable = [r for r in letters if r is not by_error["RetryableError"]]
    assert sorted(r.value for r in undecodable) == [b"{garbage", b"{}"]
    assert all(dict(r.headers)["kanol_original_topic"] == topic.encode() for r in undecodable)


async def test_handler_publishes_in_its_transaction_and_the_commit_wakes_the_relay(
    kafka_bootstrap: str, database: Database, group: str, spans: InMemorySpanExporter
) -> None:
    # A poll far longer than the test: only the wake-up on commit can publish in time.
    settings = delivery_settings(kafka_bootstrap, database.url, outbox_poll_seconds=60)
    runtime = ServiceRuntime(settings, database=database)
    consumer = EventConsumer(runtime, group_id=group, topics=[PROBE_TOPIC])

    @consumer.on(Probe)
    async def handle(probe: Probe, ctx: HandlerContext) -> None:
        await record_effect(ctx.session, probe, ctx.envelope.id, ctx.attempt)
        await ctx.publish(
            OtherProbe(probe_id=f"{probe.probe_id}-next"),
            subject="acte-9",
            tenant=ctx.envelope.tenant,
        )

    async with runtime.running():
        await consumer.wait_assigned(15)
        with trace.get_tracer("test").start_as_current_span("request") as request_span:
            trace_id = format(request_span.get_span_context().trace_id, "032x")
            first_id = await _publish(database, Probe(probe_id="chain"))
        records = await read_topic(
            kafka_bootstrap, runtime.topic(PROBE_TOPIC), count=2, wait_seconds=8
        )
        await wait_until(lambda: consumer.outcomes["ignored"] == 1, what="follow-up consumed")

    assert len(records) == 2
    headers = [{k: v.decode() for k, v in record.headers} for record in records]
    assert [h["ce_type"] for h in headers] == [Probe.event_type, OtherProbe.event_type]
    assert headers[1]["ce_subject"] == "acte-9"
    assert headers[1]["ce_source"] == "kanol-test"
    # The follow-up carries the trace of the request that caused the first event.
    assert headers[0]["traceparent"].split("-")[1] == trace_id
    assert headers[1]["traceparent"].split("-")[1] == trace_id
    assert headers[1]["traceparent"] != headers[0]["traceparent"]
    assert headers[0]["ce_id"] == first_id
    assert await count_effects(database, "chain") == 1
    assert await outbox.backlog(database) == 0


async def test_cleanup_deletes_only_old_published_and_old_inbox_rows(
    settings: CommonSettings, database: Database
) -> None:
    old = datetime.now(UTC) - timedelta(hours=settings.outbox_retention_hours + 1)
    async with database.session() as session:
        outbox.publish(session, Probe(probe_id="old-published"), subject="a", tenant=TENANT)
        outbox.publish(session, Probe(probe_id="old-pending"), subject="a", tenant=TENANT)
        outbox.publish(session, Probe(probe_id="new-published"), subject="a", tenant=TENANT)
        await session.commit()
    async with database.engine.begin() as connection:
        ids = (await connection.scalars(select(outbox_table.c.id).order_by("id"))).all()
        await connection.execute(
            update(outbox_table).where(outbox_table.c.id != ids[2]).values(created_at=old)
        )
        await connection.execute(
            update(outbox_table).where(outbox_table.c.id == ids[0]).values(published_at=old)
        )
        await connection.execute(
            update(outbox_table)
            .where(outbox_table.c.id == ids[2])
            .values(published_at=datetime.now(UTC))
        )
        inbox_old = datetime.now(UTC) - timedelta(hours=settings.inbox_retention_hours + 1)
        await connection.execute(
            insert(inbox_table),
            [
                {
                    "consumer_group": "g",
                    "event_id": "old",
                    "event_type": "t",
                    "handled_at": inbox_old,
                },
                {
                    "consumer_group": "g",
                    "event_id": "new",
                    "event_type": "t",
                    "handled_at": datetime.now(UTC),
                },
            ],
        )

    deleted = await cleanup(database, settings)

    assert deleted == (1, 1)
    async with database.engine.connect() as connection:
        left = (await connection.scalars(select(outbox_table.c.id).order_by("id"))).all()
        inbox_left = (await connection.scalars(select(inbox_table.c.event_id))).all()
    assert left == [ids[1], ids[2]]
    assert inbox_left == ["new"]
    assert await outbox.backlog(database) == 1


async def test_lifespan_registers_readiness_checks(
    settings: CommonSettings, database: Database
) -> None:
    runtime = ServiceRuntime(settings, database=database)
    app = create_app(settings, title="delivery test", lifespan=runtime.lifespan)

    async with runtime.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "kafka": "ok", "outbox": "ok"}

    strict = ServiceRuntime(
        settings.model_copy(update={"readiness_outbox_backlog_limit": 0}), database=database
    )
    await _publish(database, Probe(probe_id="waiting"))
    with pytest.raises(RuntimeError, match="1 events wait in the outbox"):
        await strict.check_outbox()
    with pytest.raises(RuntimeError, match="not running"):
        await strict.check_kafka()


async def test_two_relays_send_every_row_once_in_each_aggregates_order(
    kafka_bootstrap: str, postgres_database: Callable[[str], str]
) -> None:
    database = Database(postgres_database("relays"))
    await create_delivery_schema(database)
    settings = delivery_settings(kafka_bootstrap, database.url, outbox_batch_size=25)
    count = 300
    async with database.session() as session:
        for index in range(count):
            outbox.publish(
                session, Probe(probe_id=f"r{index}"), subject=f"a{index % 7}", tenant=TENANT
            )
        await session.commit()

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    relays = [outbox.OutboxRelay(database, producer, settings) for _ in range(2)]
    try:
        await asyncio.gather(*(relay.start() for relay in relays))
        await wait_until(lambda: _no_backlog(database), what="outbox drained")
    finally:
        await asyncio.gather(*(relay.stop() for relay in relays))
        await producer.stop()
        await database.dispose()

    records = await read_topic(
        kafka_bootstrap,
        f"{settings.kafka_topic_prefix}{PROBE_TOPIC}",
        count=count + 1,
        wait_seconds=3,
    )
    event_ids = [dict(record.headers)["ce_id"] for record in records]
    assert len(event_ids) == count
    assert len(set(event_ids)) == count
    # Within each aggregate (the record key), the order in which they were written.
    written: dict[bytes, list[int]] = {}
    for record in records:
        assert record.key is not None
        probe = decode(header_map(record.headers), record.value, Probe).data
        assert isinstance(probe, Probe)
        written.setdefault(record.key, []).append(int(probe.probe_id[1:]))
    assert len(written) == 7
    assert all(indexes == sorted(indexes) for indexes in written.values()), written


async def test_a_relay_waits_while_another_replica_publishes(
    kafka_bootstrap: str, postgres_database: Callable[[str], str]
) -> None:
    database = Database(postgres_database("relay_lock"))
    await create_delivery_schema(database)
    settings = delivery_settings(kafka_bootstrap, database.url)
    await _publish(database, Probe(probe_id="held-back"))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    relay = outbox.OutboxRelay(database, producer, settings)
    try:
        async with database.session() as other_replica:
            connection = await other_replica.connection()
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            await connection.execute(lock, {"key": outbox.RELAY_LOCK_KEY})

            assert await relay.publish_pending() == 0
            assert relay.busy_elsewhere
            assert await outbox.backlog(database) == 1
            await other_replica.rollback()

        assert await relay.publish_pending() == 1
        assert not relay.busy_elsewhere
        assert await outbox.backlog(database) == 0
    finally:
        await producer.stop()
        await database.dispose()


async def _no_backlog(database: Database) -> bool:
    return await outbox.backlog(database) == 0


async def test_long_batch_commits_on_the_way_and_a_late_failure_reruns_nothing_committed(
    kafka_bootstrap: str, database: Database, group: str
) -> None:
    settings = delivery_settings(
        kafka_bootstrap,
        database.url,
        # Each slow record outlasts the limit: the transaction commits after every one.
        consumer_transaction_seconds=0.01,
        consumer_handler_attempts=1,
        consumer_max_attempts=1,
    )
    async with database.session() as session:
        for index in range(6):
            name = "boom" if index == 5 else f"slow-{index}"
            outbox.publish(session, Probe(probe_id=name), subject="one-aggregate", tenant=TENANT)
        await session.commit()

    runtime = ServiceRuntime(settings, database=database)
    consumer = EventConsumer(runtime, group_id=group, topics=[PROBE_TOPIC])
    calls: list[str] = []

    @consumer.on(Probe)
    async def handle(probe: Probe, ctx: HandlerContext) -> None:
        calls.append(probe.probe_id)
        if probe.probe_id == "boom":
            raise RetryableError("late failure")
        await asyncio.sleep(0.03)
        await record_effect(ctx.session, probe, ctx.envelope.id, ctx.attempt)

    async with runtime.running():
        await wait_until(lambda: consumer.outcomes["dlq"] == 1, what="late failure parked")

    assert calls.count("boom") == 1
    for index in range(5):
        assert calls.count(f"slow-{index}") == 1, calls
        assert await count_effects(database, f"slow-{index}") == 1
    assert consumer.outcomes["handled"] == 5
    assert await count_rows(database, "kanol_inbox") == 5
