"""One replica at a time leads a service's singular chores; another takes over when it
stops or loses its database connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from kanol_common.db import Database
from kanol_common.leadership import Leadership, run_while_leading
from kanol_common.testing.delivery import wait_until


@pytest.fixture
async def database(postgres_database: Callable[[str], str]) -> AsyncIterator[Database]:
    db = Database(postgres_database("leadership"))
    yield db
    await db.dispose()


async def test_one_replica_leads_until_it_releases(database: Database) -> None:
    first, second = Leadership(database, "service"), Leadership(database, "service")
    other_chores = Leadership(database, "another-service")

    assert await first.hold()
    assert await first.hold()  # still leading, checked again
    assert not await second.hold()
    assert await other_chores.hold()  # another name, another lock
    await first.release()
    assert await second.hold()
    assert not await first.hold()

    assert REGISTRY.get_sample_value("kanol_leading", {"chores": "another-service"}) == 1
    await second.release()
    await other_chores.release()
    assert REGISTRY.get_sample_value("kanol_leading", {"chores": "another-service"}) == 0


async def test_a_leader_that_loses_its_connection_is_replaced(database: Database) -> None:
    first, second = Leadership(database, "service"), Leadership(database, "service")
    assert await first.hold()

    async with database.engine.connect() as admin:
        # The leader's backend, found by its lock in this test's own database only.
        kill = (
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        await admin.execute(text(kill))
        await admin.commit()

    assert await second.hold()
    assert not await first.hold()  # its check fails, and the lock is taken
    await second.release()


async def test_the_chores_run_on_one_replica_and_move_when_it_stops(database: Database) -> None:
    runs: list[str] = []

    def chore(replica: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def forever() -> None:
            runs.append(replica)
            await asyncio.Event().wait()

        return forever

    replicas = {
        name: asyncio.create_task(
            run_while_leading(Leadership(database, "service"), [chore(name)], check_seconds=0.05)
        )
        for name in ("a", "b")
    }
    await wait_until(lambda: len(runs) >= 1, what="a replica leading")
    await asyncio.sleep(0.3)
    assert len(runs) == 1
    leader = runs[0]

    replicas[leader].cancel()
    await asyncio.gather(replicas[leader], return_exceptions=True)
    await wait_until(lambda: len(runs) >= 2, what="the other replica taking over")

    assert runs == [leader, "b" if leader == "a" else "a"]
    for task in replicas.values():
        task.cancel()
    await asyncio.gather(*replicas.values(), return_exceptions=True)


async def test_on_sqlite_the_only_process_leads(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    try:
        assert await Leadership(database, "service").hold()
        assert await Leadership(database, "service").hold()
    finally:
        await database.dispose()
