"""Brute force slowed: failed logins and client authentications lock their key for a while.

Each failure is counted under several keys at once: the account (or client id) and the
caller's IP address. Past a few free failures a key is refused for a delay that doubles
with each further failure, up to a ceiling, and the count starts again once a window has
passed without failure. Nothing is locked for good: the longest refusal is
``throttle_max_delay_seconds``, after which one try is allowed again; a success clears the
account's key.

The counts live in the database (table ``throttle``), so every replica of identity sees the
same ones. A failure is recorded in a transaction of its own, so the request's rollback
does not erase it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, DateTime, Integer, String, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.db import Database, as_utc
from kanol_common.errors import Problem
from kanol_common.logging import get_logger
from kanol_identity.models import utcnow
from kanol_identity.settings import IdentitySettings

log = get_logger(__name__)


class ThrottleEntry(SQLModel, table=True):
    __tablename__ = "throttle"

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    failures: int = Field(sa_column=Column(Integer, nullable=False))
    last_failure_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    blocked_until: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )


class TooManyAttempts(Problem):
    """429: too many failures under this account, client or address; try again later."""

    status = 429
    type_slug = "too-many-attempts"
    title = "Too many failed attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed attempts; try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Key:
    """What is counted: a kind ("login", "client", "ip") and the value, stored hashed."""

    kind: str
    value: str

    @property
    def stored(self) -> str:
        # Hashed, so the table holds no logins or addresses, and any value fits the column.
        value = hashlib.sha256(self.value.lower().encode("utf-8")).hexdigest()[:40]
        return f"{self.kind}:{value}"


def account_key(login: str) -> Key:
    return Key("login", login)


def client_key(client_id: str) -> Key:
    return Key("client", client_id)


def address_key(address: str | None) -> Key:
    return Key("ip", address or "unknown")


class Throttle:
    def __init__(self, database: Database, settings: IdentitySettings) -> None:
        self._database = database
        self._settings = settings

    def free_failures(self, key: Key) -> int:
        # Many agents of a town hall share one address: an address gets more free tries.
        if key.kind == "ip":
            return self._settings.throttle_free_failures_per_address
        return self._settings.throttle_free_failures

    def delay_after(self, key: Key, failures: int) -> int:
        """Seconds refused after this many failures: 0, then 1, 2, 4... up to the ceiling."""
        beyond = failures - self.free_failures(key)
        if beyond < 0:
            return 0
        base = self._settings.throttle_base_delay_seconds
        return int(min(base * 2 ** min(beyond, 32), self._settings.throttle_max_delay_seconds))

    async def check(
        self, keys: Sequence[Key], session: AsyncSession | None = None
    ) -> frozenset[str]:
        """Raise :class:`TooManyAttempts` while any of the keys is refused.

        Reads in the caller's session when given (one connection less per request).
        Returns the keys that have failures on record, so that a success clears them
        without a write when there is nothing to clear.
        """
        now = utcnow()
        query = select(ThrottleEntry).where(col(ThrottleEntry.key).in_([k.stored for k in keys]))
        if session is not None:
            entries = list((await session.exec(query)).all())
        else:
            async with self._database.session() as own:
                entries = list((await own.exec(query)).all())
        blocked = [
            as_utc(entry.blocked_until)
            for entry in entries
            if entry.blocked_until is not None and as_utc(entry.blocked_until) > now
        ]
        if not blocked:
            return frozenset(entry.key for entry in entries)

        retry_after = max(1, math.ceil((max(blocked) - now).total_seconds()))
        log.info("throttle.refused", keys=[key.kind for key in keys], retry_after=retry_after)
        raise TooManyAttempts(retry_after)

    async def failed(self, keys: Sequence[Key]) -> None:
        """Count one failure under each key, in a transaction of its own."""
        for key in keys:
            for _ in range(2):  # a concurrent first failure may insert the row first
                try:
                    async with self._database.session() as session:
                        await self._count(session, key)
                        await session.commit()
                    break
                except IntegrityError:
                    continue

    async def _count(self, session: AsyncSession, key: Key) -> None:
        now = utcnow()
        window = timedelta(seconds=self._settings.throttle_window_seconds)
        query = select(ThrottleEntry).where(ThrottleEntry.key == key.stored).with_for_update()
        entry = (await session.exec(query)).first()
        if entry is None:
            entry = ThrottleEntry(key=key.stored, failures=0, last_failure_at=now)
        # A quiet window forgets the past failures; so does the end of a refusal that long.
        if now - as_utc(entry.last_failure_at) > window:
            entry.failures = 0

        entry.failures += 1
        entry.last_failure_at = now
        delay = self.delay_after(key, entry.failures)
        entry.blocked_until = now + timedelta(seconds=delay) if delay else None
        session.add(entry)
        if delay:
            log.info("throttle.delayed", kind=key.kind, failures=entry.failures, delay=delay)

    async def succeeded(self, keys: Sequence[Key], on_record: frozenset[str]) -> None:
        """Forget the failures of the account or client that just proved itself."""
        if not any(key.stored in on_record for key in keys):
            return

        async with self._database.session() as session:
            await session.exec(
                delete(ThrottleEntry).where(
                    col(ThrottleEntry.key).in_([key.stored for key in keys])
                )
            )
            await session.commit()

    async def purge(self) -> int:
        """Delete the entries nothing refers to any more (their window long past)."""
        horizon = timedelta(
            seconds=self._settings.throttle_window_seconds
            + self._settings.throttle_max_delay_seconds
        )
        async with self._database.session() as session:
            result = await session.exec(
                delete(ThrottleEntry).where(col(ThrottleEntry.last_failure_at) < utcnow() - horizon)
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)
