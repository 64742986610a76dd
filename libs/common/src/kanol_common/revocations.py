"""Each service's list of the clients, agents and tokens identity cut off, so that the
access tokens concerned stop working within seconds rather than when they expire.

Services verify identity's access tokens offline, by signature. When identity revokes an
API client, deactivates an agent or revokes one access token (RFC 7009) it publishes
``ApiClientRevoked``, ``AgentDeactivated`` or ``AccessTokenRevoked`` on
``identity.events``; the projection consumer of :mod:`kanol_common.organisations` writes
it into table ``kanol_revocation``, and :func:`kanol_common.auth.require_scopes` refuses
(401) a revoked token, and any token whose client or agent was cut off at or after the
moment the token was issued. A reactivated agent needs nothing more: the tokens issued
after its reactivation are younger than its deactivation.

Requests read an in-memory copy of the table that is read again at most every
``REFRESH_SECONDS``: a revocation takes effect once its event is consumed and the copy
refreshed, a few seconds in all. A revoked token's row goes once the token has expired;
clients' and agents' rows stay, one per revoked client or deactivated agent.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Column, DateTime, String, delete, or_
from sqlmodel import Field, SQLModel, col, select

from kanol_common.auth import Caller
from kanol_common.consumer import EventConsumer, HandlerContext
from kanol_common.db import Database, as_utc
from kanol_common.events.identity import AccessTokenRevoked, AgentDeactivated, ApiClientRevoked
from kanol_common.logging import get_logger

log = get_logger(__name__)

TABLE: Final = "kanol_revocation"
REFRESH_SECONDS: Final = 1.0
CLIENT: Final = "client"
AGENT: Final = "agent"
TOKEN: Final = "token"
# A revoked token's row stays this long past its expiry (the verifiers' clock leeway).
EXPIRED_TOKEN_KEPT: Final = timedelta(minutes=5)


class Revocation(SQLModel, table=True):
    """A client or agent identity cut off, and when (identity's time of the event)."""

    __tablename__ = TABLE

    principal: str = Field(
        sa_column=Column(String(300), primary_key=True),
        description="client:<client_id>, agent:<agent_id> or token:<jti>",
    )
    siren: str = Field(sa_column=Column(String(9), nullable=False))
    revoked_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # A token's expiry, after which its row serves no purpose; none for clients and agents.
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


def principal(kind: str, identifier: str) -> str:
    return f"{kind}:{identifier}"


class RevocationList:
    """The revocations, held in memory and read again from the table when a check finds
    them older than ``refresh_seconds``."""

    def __init__(self, database: Database, *, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.database = database
        self.refresh_seconds = refresh_seconds
        self._revoked: dict[str, float] = {}
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()

    async def revoked(self, caller: Caller) -> str | None:
        """Why the caller's token no longer counts (its client or agent was cut off after
        it was issued), or ``None``."""
        await self._refresh_if_old()
        if principal(TOKEN, caller.token_id) in self._revoked:
            return "This access token was revoked."
        client_cut = self._revoked.get(principal(CLIENT, caller.client_id))
        if client_cut is not None and client_cut >= caller.issued_at:
            return f"The API client {caller.client_id} was revoked after this token was issued."
        agent_cut = self._revoked.get(principal(AGENT, caller.subject))
        if agent_cut is not None and agent_cut >= caller.issued_at:
            return "The agent's account was deactivated after this token was issued."
        return None

    async def refresh(self) -> None:
        live = or_(
            col(Revocation.expires_at).is_(None),
            col(Revocation.expires_at) > datetime.now(UTC) - EXPIRED_TOKEN_KEPT,
        )
        async with self.database.session() as session:
            rows = (await session.exec(select(Revocation).where(live))).all()
        self._revoked = {row.principal: as_utc(row.revoked_at).timestamp() for row in rows}
        self._read_at = time.monotonic()

    async def _refresh_if_old(self) -> None:
        if time.monotonic() - self._read_at < self.refresh_seconds:
            return
        if self._reading.locked():
            return  # another request is reading it: this one uses the copy in hand
        async with self._reading:
            await self.refresh()


async def record(
    ctx: HandlerContext,
    kind: str,
    identifier: str,
    siren: str,
    revoked_at: datetime,
    *,
    expires_at: datetime | None = None,
) -> None:
    """Keep the latest moment the principal was cut off (a parked event may come late)."""
    key = principal(kind, identifier)
    row = await ctx.session.get(Revocation, key)
    if row is not None and as_utc(row.revoked_at) >= revoked_at:
        return
    if row is None:
        row = Revocation(principal=key, siren=siren, revoked_at=revoked_at)
    row.revoked_at = revoked_at
    row.expires_at = expires_at
    ctx.session.add(row)


async def _forget_expired_tokens(ctx: HandlerContext) -> None:
    await ctx.session.exec(
        delete(Revocation).where(
            col(Revocation.expires_at) < datetime.now(UTC) - EXPIRED_TOKEN_KEPT
        )
    )


def register_revocation_handlers(consumer: EventConsumer) -> EventConsumer:
    """Add the revocations' handlers to a consumer of ``identity.events``."""

    @consumer.on(ApiClientRevoked)
    async def on_client_revoked(event: ApiClientRevoked, ctx: HandlerContext) -> None:
        await record(ctx, CLIENT, event.client_id, event.siren, as_utc(ctx.envelope.time))
        log.info("revocation.projected", tenant=event.siren, client_id=event.client_id)

    @consumer.on(AgentDeactivated)
    async def on_agent_deactivated(event: AgentDeactivated, ctx: HandlerContext) -> None:
        await record(ctx, AGENT, event.agent_id, event.siren, as_utc(ctx.envelope.time))
        log.info("revocation.projected", tenant=event.siren, agent_id=event.agent_id)

    @consumer.on(AccessTokenRevoked)
    async def on_token_revoked(event: AccessTokenRevoked, ctx: HandlerContext) -> None:
        revoked_at = as_utc(ctx.envelope.time)
        expires_at = as_utc(event.expires_at)
        await record(ctx, TOKEN, event.jti, event.siren, revoked_at, expires_at=expires_at)
        await _forget_expired_tokens(ctx)
        log.info("revocation.projected", tenant=event.siren, client_id=event.client_id)

    return consumer


# -- migrations ----------------------------------------------------------------------------


def create_revocation_table() -> None:
    """Create ``kanol_revocation``; call it from a service's own migration."""
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        TABLE,
        sa.Column("principal", sa.String(300), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def drop_revocation_table() -> None:
    from alembic import op

    op.drop_table(TABLE)
