"""The repository on both databases archive runs on: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kanol_archive.app import MIGRATIONS_DIR
from kanol_archive.models import Archive
from kanol_archive.repository import ArchiveCursor, ArchiveRepository, InvalidCursor
from kanol_common.db import Database, upgrade_to_head


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}"
    else:
        url = postgres_database("archive_repository")
    await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, url)
    db = Database(url)
    yield db
    await db.dispose()


def _archive(source_event_id: str, siren: str = "213502388") -> Archive:
    return Archive(
        id=uuid.uuid4(),
        siren=siren,
        source_event_id=source_event_id,
        source_event_type="fr.kanol.actes.acte.acknowledged.v1",
        acte_id=str(uuid.uuid4()),
        title="Budget",
        deposited_at=datetime.now(UTC),
    )


async def test_a_second_archive_of_the_same_event_is_not_added(database: Database) -> None:
    event_id = str(uuid.uuid4())

    async with database.session() as session:
        first = await ArchiveRepository(session).add_if_new(_archive(event_id))
        await session.commit()
    async with database.session() as session:
        second = await ArchiveRepository(session).add_if_new(_archive(event_id))
        # The transaction is still usable after the conflict: nothing was raised.
        other = await ArchiveRepository(session).add_if_new(_archive(str(uuid.uuid4())))
        await session.commit()

    assert (first, second, other) == (True, False, True)
    async with database.session() as session:
        found = await ArchiveRepository(session).find_by_source_event(event_id)
    assert found is not None


async def test_pages_follow_the_cursor(database: Database) -> None:
    async with database.session() as session:
        repository = ArchiveRepository(session)
        for _ in range(3):
            await repository.add_if_new(_archive(str(uuid.uuid4()), siren="200000172"))
        await session.commit()

    async with database.session() as session:
        repository = ArchiveRepository(session)
        first = await repository.list_for_organisation("200000172", limit=2)
        cursor = ArchiveCursor.decode(ArchiveCursor.after(first[-1]).encode())
        rest = await repository.list_for_organisation("200000172", after=cursor, limit=2)

    assert len(first) == 2
    assert len(rest) == 1
    assert {item.id for item in first}.isdisjoint({item.id for item in rest})


@pytest.mark.parametrize("text", ["", "!!", "e30", "eyJkIjogMX0"])
def test_a_foreign_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        ArchiveCursor.decode(text)
