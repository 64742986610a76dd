"""Holds on stored content, so that a removal never takes content a writer is about to use.

Objects are addressed by their content: two documents of the same bytes share one object,
and a service may store bytes that a removal (an elimination, the orphan collector) is
about to take. On PostgreSQL a writer *holds* each content it stores (a shared,
transaction-scoped advisory lock, taken before the bytes go to the store) until its
transaction ends; a remover *takes* the content (the same lock, exclusive) without
waiting, and leaves it where it is when a writer holds it: that writer is about to
reference it, or, if its transaction fails, leaves an orphan for the next collection.

SQLite has no such lock. One process runs a service there, and the orphan collector, a
separate command, relies on its grace period alone: content stored within it is never
removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.storage import ObjectStore, StoredObject

InUse = Callable[[AsyncSession, Iterable[str]], Awaitable[set[str]]]
"""Which of these contents (SHA-256) something committed in the service still needs."""

# The two-key form of PostgreSQL's advisory locks keeps these apart from the single-key
# locks of the logbook and the outbox relay; "KNOL" names the content holds.
_HOLD_CLASS: Final = 0x4B4E4F4C
# Well under PostgreSQL's 65,535 parameters of a statement.
_HOLDS_PER_STATEMENT: Final = 1000


async def hold(session: AsyncSession, *contents: str) -> None:
    """Hold these contents until the session's transaction ends: no removal takes them.
    One round trip per ``_HOLDS_PER_STATEMENT`` contents."""
    if not contents or not _locks_available(session):
        return
    for start in range(0, len(contents), _HOLDS_PER_STATEMENT):
        chunk = contents[start : start + _HOLDS_PER_STATEMENT]
        keys = {f"k{index}": _key_of(sha256) for index, sha256 in enumerate(chunk)}
        locks = ", ".join(f"pg_advisory_xact_lock_shared(:class, :{name})" for name in keys)
        await session.exec(  # type: ignore[call-overload]
            text(f"SELECT {locks}").bindparams(**{"class": _HOLD_CLASS, **keys})
        )


async def take(session: AsyncSession, sha256: str) -> bool:
    """Take this content for removal until the session's transaction ends; ``False`` when
    a writer holds it now, and the remover must leave it."""
    if not _locks_available(session):
        return True
    result = await session.exec(  # type: ignore[call-overload]
        text("SELECT pg_try_advisory_xact_lock(:class, :key)").bindparams(
            **{"class": _HOLD_CLASS, "key": _key_of(sha256)}
        )
    )
    return bool(result.scalar())


async def put_held(
    session: AsyncSession, store: ObjectStore, *contents: bytes
) -> list[StoredObject]:
    """Store ``contents`` under holds in the session's transaction (one round trip for the
    holds), in order."""
    await hold(session, *(hashlib.sha256(data).hexdigest() for data in contents))
    return [await store.put(data) for data in contents]


async def remove_unused(
    session: AsyncSession,
    store: ObjectStore,
    contents: Iterable[str],
    in_use: InUse,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Remove from the store those of ``contents`` that no writer holds and nothing
    committed needs, and say which (with ``dry_run``, only say). They stay taken until the
    session's transaction ends; the caller commits."""
    wanted = list(dict.fromkeys(contents))
    taken = [sha256 for sha256 in wanted if await take(session, sha256)]
    needed = await in_use(session, taken)
    unused = [sha256 for sha256 in taken if sha256 not in needed]
    if not dry_run:
        for sha256 in unused:
            await store.delete(sha256)
    return unused


def _locks_available(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _key_of(sha256: str) -> int:
    """A signed 32-bit key from the content's address; two contents sharing one only wait
    for each other a little more."""
    key = int(sha256[:8], 16)
    return key - (1 << 32) if key >= 1 << 31 else key
