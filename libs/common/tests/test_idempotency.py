"""Idempotency-Key records: the same request replays its response, another is refused, and
of two twin requests racing only one effect is kept; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from fastapi.responses import JSONResponse
from sqlalchemy import Column, String, func
from sqlmodel import Field, SQLModel, select

from kanol_common.db import Database
from kanol_common.idempotency import (
    IdempotencyKeyReused,
    IdempotencyRecord,
    commit_or_replay,
    remember,
    replay,
    request_fingerprint,
)

SCOPE = "213502388:client"


class Effect(SQLModel, table=True):
    """What a request did, one row per request that was not a replay."""

    __tablename__ = "idempotency_test_effect"

    id: str = Field(sa_column=Column(String(64), primary_key=True))


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'idempotency.sqlite3'}"
    else:
        url = postgres_database("idempotency")
    db = Database(url)
    tables = [
        SQLModel.metadata.tables[name]
        for name in (IdempotencyRecord.__tablename__, Effect.__tablename__)
    ]
    async with db.engine.begin() as connection:
        await connection.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=tables))
    yield db
    await db.dispose()


async def _handle(db: Database, key: str, body: dict[str, str]) -> tuple[int, bytes, bool]:
    """A POST handler as a route writes it: replay, or do the work and remember it."""
    raw = json.dumps(body).encode()
    fingerprint = request_fingerprint("POST", "/things", raw)
    async with db.session() as session:
        replayed = await replay(session, SCOPE, key, fingerprint)
        if replayed is not None:
            return replayed.status_code, bytes(replayed.body), True
        session.add(Effect(id=f"{key}-{body['name']}"))
        response = JSONResponse(body, status_code=201, headers={"Location": "/things/1"})
        remember(session, SCOPE, key, fingerprint, response)
        answered = await commit_or_replay(session, SCOPE, key, fingerprint, response)
        return answered.status_code, bytes(answered.body), answered is not response


async def _effects(db: Database) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(Effect))).one())


async def test_the_same_request_replays_and_another_is_refused(database: Database) -> None:
    first = await _handle(database, "k1", {"name": "a"})
    again = await _handle(database, "k1", {"name": "a"})
    assert first == (201, b'{"name":"a"}', False)
    assert again == (201, b'{"name":"a"}', True)
    assert await _effects(database) == 1

    with pytest.raises(IdempotencyKeyReused) as refused:
        await _handle(database, "k1", {"name": "b"})
    assert refused.value.status == 422
    assert await _effects(database) == 1

    await _handle(database, "k2", {"name": "b"})
    assert await _effects(database) == 2


async def test_a_twin_that_loses_the_race_answers_as_the_winner(database: Database) -> None:
    raw = json.dumps({"name": "a"}).encode()
    fingerprint = request_fingerprint("POST", "/things", raw)
    async with database.session() as loser:
        # The loser checked before the winner committed, so it found no record.
        assert await replay(loser, SCOPE, "k", fingerprint) is None
        assert await _handle(database, "k", {"name": "a"}) == (201, b'{"name":"a"}', False)
        loser.add(Effect(id="k-twin"))
        response = JSONResponse({"name": "a"}, status_code=201)
        remember(loser, SCOPE, "k", fingerprint, response)
        answered = await commit_or_replay(loser, SCOPE, "k", fingerprint, response)
    assert answered is not response
    assert answered.headers["Idempotency-Replayed"] == "true"
    assert answered.headers["location"] == "/things/1"
    assert await _effects(database) == 1
