"""Holds on stored content: a writer's shared holds, taken in batches, keep removers off
until its transaction ends; on SQLite there is nothing to hold."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kanol_common import holds
from kanol_common.db import Database


def _contents(count: int) -> list[str]:
    return [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)]


@pytest.fixture
async def database(postgres_database: Callable[[str], str]) -> AsyncIterator[Database]:
    db = Database(postgres_database("holds"))
    yield db
    await db.dispose()


async def test_held_contents_cannot_be_taken_until_the_writer_ends(database: Database) -> None:
    contents = _contents(2500)  # more than one statement's worth

    async with database.session() as writer:
        await holds.hold(writer, *contents)
        async with database.session() as remover:
            assert not await holds.take(remover, contents[0])
            assert not await holds.take(remover, contents[-1])
            assert await holds.take(remover, _contents(2501)[-1])
        await writer.commit()

    async with database.session() as remover:
        assert await holds.take(remover, contents[-1])


async def test_another_writer_holds_the_same_content_meanwhile(database: Database) -> None:
    (content,) = _contents(1)

    async with database.session() as first, database.session() as second:
        await holds.hold(first, content)
        await holds.hold(second, content)  # shared: it does not wait
        async with database.session() as remover:
            assert not await holds.take(remover, content)


async def test_sqlite_has_nothing_to_hold(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'holds.sqlite3'}")
    try:
        async with database.session() as writer, database.session() as remover:
            await holds.hold(writer, *_contents(3))
            assert await holds.take(remover, _contents(1)[0])
    finally:
        await database.dispose()
