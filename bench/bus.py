"""Raw aiokafka against Kanol's outbox relay and consumer runtime, on the same 1 KB events.

One run, one broker, one database: it measures
- raw produce (idempotent, acks=all) and raw consume (one group, manual commit) with aiokafka;
- the outbox relay: rows already committed, the time for the relay to publish and mark all;
- the consumer runtime: the time for a group to handle all (decode, one transaction per
  record with its inbox row, offsets committed after the database).
Prints rates and ratios; asserts nothing.

    uv run python -m bench.bus --events 5000 --database postgres
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.infra import kafka, postgres_database
from kanol_common import outbox
from kanol_common.consumer import EventConsumer, HandlerContext
from kanol_common.db import Database
from kanol_common.events.base import EVENT_TYPES, EventData
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.delivery import create_delivery_schema, delivery_settings

PAYLOAD = "x" * 900  # with the envelope's fields, a record of about 1 KB


class BenchRecorded(EventData):
    event_type = "fr.kanol.bench.sample.recorded.v1"
    topic = "bench.samples"

    sample_id: str
    body: str


EVENT_TYPES.pop(BenchRecorded.event_type, None)  # not part of the published catalog


async def raw_produce(bootstrap: str, topic: str, count: int, value: bytes) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value=value, key=str(index % 64).encode())
            for index in range(count)
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        received = 0
        started: float | None = None
        while received < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if batches and started is None:
                started = time.perf_counter()
            received += sum(len(batch) for batch in batches.values())
            if batches:
                await consumer.commit()
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


async def relay_and_consume(bootstrap: str, database_url: str, count: int) -> tuple[float, float]:
    settings = delivery_settings(bootstrap, database_url, service_name="bench")
    database = Database(database_url)
    await create_delivery_schema(database)

    for start in range(0, count, 500):
        async with database.session() as session:
            for index in range(start, min(start + 500, count)):
                sample = BenchRecorded(sample_id=str(index), body=PAYLOAD)
                outbox.publish(session, sample, subject=str(index % 64), tenant="213502388")
            await session.commit()

    handled = 0
    first_handled_at = 0.0
    done = asyncio.Event()
    consumer = EventConsumer(settings, group_id="bench", topics=[BenchRecorded.topic])

    @consumer.on(BenchRecorded)
    async def count_sample(event: BenchRecorded, context: HandlerContext) -> None:
        nonlocal handled, first_handled_at
        if handled == 0:
            first_handled_at = time.perf_counter()
        handled += 1
        if handled >= count:
            done.set()

    runtime = ServiceRuntime(settings, database=database)
    started = time.perf_counter()
    async with runtime.running():
        # The backlog lives in the database: polling it is the only way to see it drain.
        while await outbox.backlog(database) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        relay_seconds = time.perf_counter() - started

        # The consumer starts after the relay is done, so each figure is measured alone;
        # like the raw figure, its clock starts at the first record, not at the group join.
        await consumer.start(database, runtime.producer)
        await asyncio.wait_for(done.wait(), timeout=600)
        consume_seconds = time.perf_counter() - first_handled_at
        await consumer.stop()
    await database.dispose()
    return relay_seconds, consume_seconds


def _line(label: str, count: int, seconds: float, reference: float | None = None) -> str:
    rate = count / seconds
    ratio = f"  ({rate / reference:.2f} of raw)" if reference else ""
    return f"  {label:<34} {rate:>9.0f} events/s{ratio}"


async def main(count: int, database: str) -> None:
    sample = BenchRecorded(sample_id="0", body=PAYLOAD)
    value = sample.model_dump_json().encode()
    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="kanol-bench-") as folder:
        if database == "postgres":
            database_url = postgres_database("bus")
        else:
            database_url = f"sqlite+aiosqlite:///{folder}/bus.sqlite3"

        topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
        produce_seconds = await raw_produce(bootstrap, topic, count, value)
        consume_seconds = await raw_consume(bootstrap, topic, count)
        relay_seconds, runtime_seconds = await relay_and_consume(bootstrap, database_url, count)

    produce_rate = count / produce_seconds
    consume_rate = count / consume_seconds
    print(f"bus: {count} events of {len(value)} bytes, database {database}")
    print(_line("raw aiokafka produce (acks=all)", count, produce_seconds))
    print(_line("outbox relay (read, send, mark)", count, relay_seconds, produce_rate))
    print(_line("raw aiokafka consume + commit", count, consume_seconds))
    print(_line("consumer runtime (inbox, batch tx)", count, runtime_seconds, consume_rate))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Raw aiokafka against the delivery runtime")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.database))
