"""The logbook: a hash chain that stays linear under concurrent writers, whose tampering
the verification finds, and whose published heads expose a history rewritten in full."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import col, select

from kanol_archive import logbook
from kanol_archive.__main__ import main
from kanol_archive.app import MIGRATIONS_DIR
from kanol_archive.logbook import LogbookEntry, LogbookSeal, Operation
from kanol_archive.settings import ArchiveSettings
from kanol_common.db import Database, upgrade_to_head
from kanol_common.delivery_models import OutboxMessage
from kanol_common.events.archive import TOPIC, LogbookSealed
from kanol_common.runtime import ServiceRuntime

from .conftest import SIREN


def _database(app: FastAPI) -> Database:
    runtime: ServiceRuntime = app.state.runtime
    return runtime.database


async def _append(database: Database, number: int) -> LogbookEntry:
    async with database.session() as session:
        entry = await logbook.append(
            session,
            operation=Operation.ARCHIVE_READ,
            siren=SIREN,
            archive_id=str(uuid.uuid4()),
            actor=f"client-{number}",
            details={"number": number, "accents": "délibération"},
        )
        await session.commit()
        return entry


async def test_each_entry_hashes_its_content_and_the_previous_hash(archive_app: FastAPI) -> None:
    database = _database(archive_app)

    first = await _append(database, 1)
    second = await _append(database, 2)

    assert second.sequence == first.sequence + 1
    assert second.previous_hash == first.hash
    assert logbook.entry_hash(second) == second.hash
    async with database.session() as session:
        stored = await session.get(LogbookEntry, second.sequence)
    assert stored is not None
    assert stored.details == {"number": 2, "accents": "délibération"}
    assert logbook.entry_hash(stored) == second.hash


async def test_concurrent_writers_keep_the_chain_linear(archive_app: FastAPI) -> None:
    database = _database(archive_app)

    written = await asyncio.gather(*(_append(database, n) for n in range(20)))

    sequences = sorted(entry.sequence for entry in written)
    assert sequences == list(range(sequences[0], sequences[0] + 20))
    async with database.session() as session:
        report = await logbook.verify(session)
    assert report.intact, report
    assert report.head_sequence >= sequences[-1]


async def test_concurrent_writers_on_sqlite_wait_for_each_other(tmp_path: Path) -> None:
    # make up runs archive on SQLite: a read logged while a deposit appends must not fail.
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, url)
    database = Database(url)
    try:

        async def slow_append(number: int) -> LogbookEntry:
            async with database.session() as session:
                entry = await logbook.append(
                    session,
                    operation=Operation.ARCHIVE_READ,
                    siren=SIREN,
                    archive_id=None,
                    actor=f"client-{number}",
                    details={"number": number},
                )
                await asyncio.sleep(0.01)  # another writer's turn, if it could take it
                await session.commit()
                return entry

        written = await asyncio.gather(*(slow_append(n) for n in range(10)))
        async with database.session() as session:
            report = await logbook.verify(session)
    finally:
        await database.dispose()

    assert sorted(entry.sequence for entry in written) == list(range(1, 11))
    assert report.intact, report


async def test_verification_finds_the_first_tampered_entry(empty_database: Database) -> None:
    database = empty_database
    for number in range(5):
        await _append(database, number)
    async with database.session() as session:
        assert (await logbook.verify(session)).intact
        # Someone rewrites what entry 3 says, in the database, without its hash.
        await session.exec(  # type: ignore[call-overload]
            text("UPDATE logbook_entry SET actor = 'nobody' WHERE sequence = 3")
        )
        await session.commit()

    async with database.session() as session:
        report = await logbook.verify(session)

    assert not report.intact
    assert report.first_broken is not None
    assert report.first_broken.sequence == 3
    assert "content" in report.first_broken.reason


async def test_verification_finds_a_removed_entry(empty_database: Database) -> None:
    database = empty_database
    for number in range(4):
        await _append(database, number)
    async with database.session() as session:
        await session.exec(  # type: ignore[call-overload]
            text("DELETE FROM logbook_entry WHERE sequence = 2")
        )
        await session.commit()
    async with database.session() as session:
        report = await logbook.verify(session)

    assert report.first_broken == logbook.BrokenEntry(3, "sequence 2 is missing")


async def test_a_history_rewritten_in_full_disagrees_with_the_published_heads(
    empty_database: Database,
) -> None:
    database = empty_database
    for number in range(3):
        await _append(database, number)
    async with database.session() as session:
        sealed = await logbook.seal(session, tenant="KANOL-SAE")
        await session.commit()
    assert sealed is not None
    published = {sealed.sequence: sealed.hash}

    # The forger changes entry 2 and recomputes every hash after it: the chain holds.
    async with database.session() as session:
        rows = list(
            (await session.exec(select(LogbookEntry).order_by(col(LogbookEntry.sequence)))).all()
        )
        previous = logbook.GENESIS_HASH
        for row in rows:
            if row.sequence == 2:
                row.details = {"number": 99}
            row.previous_hash = previous
            row.hash = logbook.entry_hash(row)
            previous = row.hash
            session.add(row)
        await session.commit()

    async with database.session() as session:
        alone = await logbook.verify(session)
        against_published = await logbook.verify(session, published)

    assert alone.intact
    assert not against_published.intact
    assert against_published.problems == [
        f"entry {sealed.sequence}: its hash differs from the published head"
    ]


async def test_a_seal_goes_to_the_outbox_once_per_head(empty_database: Database) -> None:
    database = empty_database
    await _append(database, 1)
    async with database.session() as session:
        first = await logbook.seal(session, tenant="KANOL-SAE")
        again = await logbook.seal(session, tenant="KANOL-SAE")
        await session.commit()
    async with database.session() as session:
        messages = list(
            (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == TOPIC))).all()
        )
        seals = list((await session.exec(select(LogbookSeal))).all())

    assert first is not None
    assert again is None
    assert len(seals) == 1
    assert [json.loads(m.payload)["sequence"] for m in messages] == [first.sequence]


async def test_published_heads_are_read_back_from_the_topic(
    archive_app: FastAPI, archive_settings: ArchiveSettings
) -> None:
    database = _database(archive_app)
    await _append(database, 1)
    async with database.session() as session:
        sealed = await logbook.seal(session, tenant="KANOL-SAE")
        await session.commit()
    assert sealed is not None

    topic = f"{archive_settings.kafka_topic_prefix}{TOPIC}"
    heads: dict[int, str] = {}
    for _ in range(50):  # the relay publishes shortly after the commit
        heads = await logbook.published_heads(
            archive_settings.kafka_bootstrap, topic, timeout_seconds=3
        )
        if sealed.sequence in heads:
            break
        await asyncio.sleep(0.2)

    assert heads[sealed.sequence] == sealed.hash
    assert LogbookSealed.event_type == "fr.kanol.archive.logbook.sealed.v1"


async def test_the_command_says_intact_or_shows_the_break(
    empty_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = empty_database.url
    for number in range(3):
        await _append(empty_database, number)
    monkeypatch.setenv("KANOL_DATABASE_URL", url)

    intact = await asyncio.to_thread(main, ["verify-logbook"])
    said = capsys.readouterr().out

    database = Database(url)
    try:
        async with database.session() as session:
            await session.exec(  # type: ignore[call-overload]
                text("UPDATE logbook_entry SET operation = 'x' WHERE sequence = 2")
            )
            await session.commit()
    finally:
        await database.dispose()
    broken = await asyncio.to_thread(main, ["verify-logbook"])

    assert intact == 0
    assert "intact" in said
    assert broken == 1
    assert "BROKEN at entry 2" in capsys.readouterr().out


async def test_the_background_task_publishes_the_head_each_period(
    empty_database: Database,
) -> None:
    await _append(empty_database, 1)

    task = asyncio.create_task(
        logbook.keep_sealing(empty_database, period_seconds=0.05, tenant="KANOL-SAE")
    )
    try:
        seals: list[LogbookSeal] = []
        for _ in range(200):
            async with empty_database.session() as session:
                seals = list((await session.exec(select(LogbookSeal))).all())
            if seals:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert [(seal.sequence, seal.hash) for seal in seals] == [(1, seals[0].hash)]
    async with empty_database.session() as session:
        assert (await logbook.head(session)) == (1, seals[0].hash)


async def test_the_command_compares_with_the_published_heads(
    archive_app: FastAPI,
    archive_settings: ArchiveSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = _database(archive_app)
    await _append(database, 1)
    async with database.session() as session:
        sealed = await logbook.seal(session, tenant="KANOL-SAE")
        await session.commit()
    assert sealed is not None
    topic = f"{archive_settings.kafka_topic_prefix}{TOPIC}"
    for _ in range(50):  # wait for the relay, so that the command finds the head published
        heads = await logbook.published_heads(
            archive_settings.kafka_bootstrap, topic, timeout_seconds=3
        )
        if sealed.sequence in heads:
            break
        await asyncio.sleep(0.2)
    monkeypatch.setenv("KANOL_DATABASE_URL", archive_settings.resolved_database_url())
    monkeypatch.setenv("KANOL_KAFKA_BOOTSTRAP", archive_settings.kafka_bootstrap)
    monkeypatch.setenv("KANOL_KAFKA_TOPIC_PREFIX", archive_settings.kafka_topic_prefix)

    status = await asyncio.to_thread(main, ["verify-logbook", "--published"])

    said = capsys.readouterr().out
    assert status == 0, said
    assert "published head(s) compared" in said
    assert "intact" in said
