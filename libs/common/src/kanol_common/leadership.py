"""One replica at a time runs a service's singular chores: reading a gateway's reply feed,
reporting late work. The others stand by and one of them takes over when it stops.

The leader holds a PostgreSQL session-level advisory lock on a connection of its own. The
lock ends with that connection, so a replica that dies, or loses its database, frees it for
another at its next try. On SQLite (a single process by construction) the caller leads.

    leadership = Leadership(runtime.database, "actes-pes")
    task = asyncio.create_task(run_while_leading(leadership, [receiver.run, monitor.run]))
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_common.metrics import LEADING

log = get_logger(__name__)

# How often a replica checks that it still leads, or tries to lead.
CHECK_SECONDS = 2.0


class Leadership:
    """Whether this replica leads the chores called ``name`` (one lock per name)."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name
        # A signed 64-bit key, as pg_try_advisory_lock takes, derived from the name.
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._connection: AsyncConnection | None = None

    async def hold(self) -> bool:
        """Lead if nobody does, or check that this replica still does; whether it leads."""
        leading = await self._hold()
        LEADING.labels(self.name).set(1 if leading else 0)
        return leading

    async def _hold(self) -> bool:
        if self.database.is_sqlite:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                await self._connection.commit()
                return True
            except Exception as exc:
                log.warning("leadership.lost", name=self.name, error=str(exc))
                await self._close()
        return await self._try_take()

    async def release(self) -> None:
        """Stop leading (the lock goes with the connection)."""
        LEADING.labels(self.name).set(0)
        if self._connection is not None:
            log.info("leadership.released", name=self.name)
            await self._close()

    async def _try_take(self) -> bool:
        connection = await self.database.engine.connect()
        try:
            statement = text("SELECT pg_try_advisory_lock(:key)")
            taken = bool((await connection.execute(statement, {"key": self.key})).scalar())
            # The lock belongs to the session, not to this transaction: end the transaction
            # so that the connection does not sit idle inside one.
            await connection.commit()
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return False
        self._connection = connection
        log.info("leadership.taken", name=self.name)
        return True

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            # Closing returns the connection to the pool, and a pooled connection keeps its
            # session: unlock explicitly, then drop it from the pool altogether.
            await connection.execute(text("SELECT pg_advisory_unlock_all()"))
            await connection.commit()
        with contextlib.suppress(Exception):
            await connection.invalidate()
        with contextlib.suppress(Exception):
            await connection.close()


async def run_while_leading(
    leadership: Leadership,
    chores: Sequence[Callable[[], Coroutine[Any, Any, None]]],
    check_seconds: float = CHECK_SECONDS,
) -> None:
    """Run ``chores`` (endless loops) while this replica leads; stop them when it no longer
    does, and start them again when it leads anew."""
    running: list[asyncio.Task[None]] = []
    try:
        while True:
            try:
                leading = await leadership.hold()
            except Exception as exc:
                log.warning("leadership.check_failed", name=leadership.name, error=str(exc))
                leading = False
            if leading and not running:
                running = [asyncio.create_task(chore()) for chore in chores]
            elif not leading and running:
                await _cancel(running)
                running = []
            await asyncio.sleep(check_seconds)
    finally:
        await _cancel(running)
        await leadership.release()


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
