"""Revoked clients and deactivated agents, from identity.events through a real broker: a
service refuses their tokens issued before the cut, and accepts those issued after it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.engine import Connection

from kanol_common import outbox
from kanol_common.auth import Caller, require_scopes
from kanol_common.consumer import HandlerContext
from kanol_common.db import Database, as_utc
from kanol_common.envelope import CloudEvent
from kanol_common.events.identity import AccessTokenRevoked, AgentDeactivated, ApiClientRevoked
from kanol_common.http import create_app
from kanol_common.organisations import build_organisation_consumer
from kanol_common.revocations import (
    AGENT,
    CLIENT,
    TOKEN,
    Revocation,
    RevocationList,
    create_revocation_table,
    drop_revocation_table,
    principal,
    record,
)
from kanol_common.runtime import ServiceRuntime
from kanol_common.settings import CommonSettings
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import create_delivery_schema, delivery_settings, wait_until

SIREN = "213502388"


@pytest.fixture
async def database(postgres_database: Callable[[str], str]) -> AsyncIterator[Database]:
    db = Database(postgres_database("revocations"))
    await create_delivery_schema(db)

    def create(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            create_revocation_table()

    async with db.engine.begin() as connection:
        await connection.run_sync(create)
    yield db
    await db.dispose()


def _service(database: Database, tokens: TokenFactory) -> FastAPI:
    router = APIRouter()

    @router.get("/v1/actes")
    async def actes(caller: Annotated[Caller, Depends(require_scopes("actes:read"))]) -> str:
        return caller.client_id

    settings = CommonSettings(service_name="revocations-test")
    app = create_app(settings, title="t", routers=[router])
    app.state.token_verifier = tokens.verifier()
    app.state.revocations = RevocationList(database, refresh_seconds=0)
    return app


async def _revoked(database: Database, key: str) -> Revocation | None:
    async with database.session() as session:
        return await session.get(Revocation, key)


async def test_tokens_issued_before_the_cut_are_refused(
    database: Database, kafka_bootstrap: str
) -> None:
    settings = delivery_settings(kafka_bootstrap, database.url, service_name="actes-pes")
    runtime = ServiceRuntime(settings, database=database)
    build_organisation_consumer(runtime)
    before = int(time.time()) - 60

    async with runtime.running():
        await runtime.wait_assigned()
        async with database.session() as session:
            revoked = ApiClientRevoked(client_id="logiciel-mairie", siren=SIREN)
            outbox.publish(session, revoked, subject=SIREN, tenant=SIREN)
            deactivated = AgentDeactivated(agent_id="agent-42", siren=SIREN)
            outbox.publish(session, deactivated, subject=SIREN, tenant=SIREN)
            one_token = AccessTokenRevoked(
                jti="jeton-revoque",
                client_id="logiciel-cantine",
                siren=SIREN,
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            )
            outbox.publish(session, one_token, subject="logiciel-cantine", tenant=SIREN)
            await session.commit()

        async def projected() -> bool:
            keys = (
                principal(CLIENT, "logiciel-mairie"),
                principal(AGENT, "agent-42"),
                principal(TOKEN, "jeton-revoque"),
            )
            return all([await _revoked(database, key) is not None for key in keys])

        await wait_until(projected, what="the revocations projected")

    tokens = TokenFactory()
    transport = httpx.ASGITransport(app=_service(database, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://actes.test") as http:

        async def status(token: str) -> tuple[int, str]:
            response = await http.get("/v1/actes", headers={"Authorization": f"Bearer {token}"})
            return response.status_code, response.text

        revoked_client = tokens.issue(SIREN, "actes:read", "logiciel-mairie", iat=before)
        other_client = tokens.issue(SIREN, "actes:read", "logiciel-cantine", iat=before)
        revoked_token = tokens.issue(SIREN, "actes:read", "logiciel-cantine", jti="jeton-revoque")
        agent_before = tokens.issue(SIREN, "actes:read", "portail", sub="agent-42", iat=before)
        # Reactivated, the agent signs in again: a token issued after the deactivation.
        agent_after = tokens.issue(
            SIREN, "actes:read", "portail", sub="agent-42", iat=int(time.time()) + 2
        )

        refused_client, refused_agent = await status(revoked_client), await status(agent_before)
        assert refused_client[0] == 401 and "logiciel-mairie was revoked" in refused_client[1]
        assert refused_agent[0] == 401 and "deactivated" in refused_agent[1]
        assert (await status(other_client))[0] == 200
        refused_token = await status(revoked_token)
        assert refused_token[0] == 401 and "access token was revoked" in refused_token[1]
        assert (await status(agent_after))[0] == 200


async def test_a_late_event_does_not_move_the_cut_back(database: Database) -> None:
    later = datetime.now(UTC)
    earlier = later - timedelta(hours=1)
    event = CloudEvent.new(
        ApiClientRevoked(client_id="logiciel", siren=SIREN),
        source="identity",
        subject=SIREN,
        tenant=SIREN,
    )

    for moment in (later, earlier):
        async with database.session() as session:
            ctx = HandlerContext(session=session, envelope=event, group="test")
            await record(ctx, CLIENT, "logiciel", SIREN, moment)
            await session.commit()

    row = await _revoked(database, principal(CLIENT, "logiciel"))
    assert row is not None and as_utc(row.revoked_at) == later


async def test_an_expired_tokens_revocation_is_no_longer_read(database: Database) -> None:
    event = CloudEvent.new(
        ApiClientRevoked(client_id="logiciel", siren=SIREN),
        source="identity",
        subject=SIREN,
        tenant=SIREN,
    )
    now = datetime.now(UTC)
    async with database.session() as session:
        ctx = HandlerContext(session=session, envelope=event, group="test")
        for jti, expires_at in (("expire", now - timedelta(hours=1)), ("vivant", now)):
            await record(ctx, TOKEN, jti, SIREN, now, expires_at=expires_at)
        await session.commit()

    revocations = RevocationList(database)
    await revocations.refresh()

    dead = Caller("logiciel", SIREN, frozenset(), "expire", "logiciel", now.timestamp())
    live = Caller("logiciel", SIREN, frozenset(), "vivant", "logiciel", now.timestamp())
    assert await revocations.revoked(dead) is None
    assert await revocations.revoked(live) == "This access token was revoked."


async def test_the_migration_helper_drops_what_it_creates(database: Database) -> None:
    def drop(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            drop_revocation_table()

    async with database.engine.begin() as connection:
        await connection.run_sync(drop)

    with pytest.raises(Exception, match="kanol_revocation"):
        await _revoked(database, principal(CLIENT, "logiciel"))
