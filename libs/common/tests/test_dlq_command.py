"""The operator's DLQ command: list, show and replay, on a real broker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kanol_common import dlq, outbox
from kanol_common.consumer import EventConsumer, HandlerContext, NonRetryableError
from kanol_common.db import Database
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.delivery import (
    PROBE_TOPIC,
    Probe,
    count_effects,
    create_delivery_schema,
    delivery_settings,
    record_effect,
    wait_until,
)

TENANT = "213502388"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'dlq.sqlite3'}")
    await create_delivery_schema(db)
    yield db
    await db.dispose()


async def _command(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await dlq.run(list(argv), out)
    return status, out.getvalue()


async def test_list_show_and_replay_a_dead_letter(kafka_bootstrap: str, database: Database) -> None:
    settings = delivery_settings(kafka_bootstrap, database.url)
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    runtime = ServiceRuntime(settings, database=database)
    consumer = EventConsumer(runtime, group_id=group, topics=[PROBE_TOPIC])
    fixed = False
    calls: list[int] = []

    @consumer.on(Probe)
    async def handle(probe: Probe, ctx: HandlerContext) -> None:
        calls.append(ctx.attempt)
        if not fixed:
            raise NonRetryableError("matière 9.9 is unknown")
        await record_effect(ctx.session, probe, ctx.envelope.id, ctx.attempt)

    options = [
        "--group",
        group,
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        settings.kafka_topic_prefix,
    ]
    async with runtime.running():
        async with database.session() as session:
            event = outbox.publish(session, Probe(probe_id="refused"), subject="a-1", tenant=TENANT)
            await session.commit()
        await wait_until(lambda: consumer.outcomes["dlq"] == 1, what="dead-lettered")
        assert calls == [1]

        status, listing = await _command(*options, "list")
        assert status == 0
        lines = listing.splitlines()
        assert lines[0] == f"1 message(s) on {consumer.dlq_topic}"
        assert lines[1].startswith("0:0 ")
        assert f"id={event.id}" in lines[1]
        assert "type=fr.kanol.testing.probe.recorded.v1" in lines[1]
        assert f"from {runtime.topic(PROBE_TOPIC)}[" in lines[1]
        assert "attempts=1" in lines[1]
        assert "error=NonRetryableError: matière 9.9 is unknown" in lines[1]

        status, shown = await _command(*options, "show", "0")
        assert status == 0
        assert "key: a-1" in shown
        assert f"ce_id: {event.id}" in shown
        assert f"kanol_group: {group}" in shown
        assert '"probe_id": "refused"' in shown

        status, missing = await _command(*options, "show", "7")
        assert status == 1
        assert "no message at offset 7" in missing

        fixed = True
        status, replayed = await _command(*options, "replay", "--offset", "0")
        assert status == 0
        assert replayed.splitlines()[-1] == "1 message(s) replayed"
        await wait_until(lambda: consumer.outcomes["handled"] == 1, what="replay handled")

        # A second replay is harmless: the inbox recognises the event.
        status, _ = await _command(*options, "replay", "--all")
        assert status == 0
        await wait_until(lambda: consumer.outcomes["duplicate"] == 1, what="replay skipped")

    assert await count_effects(database, "refused") == 1
    assert calls == [1, 1]


def test_command_runs_as_a_module(kafka_bootstrap: str) -> None:
    group = f"dlq-empty-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KANOL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KANOL_KAFKA_TOPIC_PREFIX": "tnone.",
    }

    result = subprocess.run(
        [sys.executable, "-m", "kanol_common.dlq", "--group", group, "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"0 message(s) on tnone.{group}.dlq"
