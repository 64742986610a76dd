"""POST /v1/transfers is refused, with the reason, to an organisation not subscribed to the
archive; the projection of identity's organisations is filled from identity.events on Kafka."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from kanol_common import outbox
from kanol_common.events.identity import (
    EffectiveSubscription,
    OrganisationRegistered,
    SubscriptionsChanged,
)
from kanol_common.organisations import OrganisationProjection
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import count_rows, wait_until
from kanol_common.testing.organisations import seed_organisation

from .conftest import bearer

pytestmark = pytest.mark.usefixtures("archive_app")

PROBLEMS = "https://kanol.fr/problems/"
SCOPES = "archive:write archive:read"
UNSUBSCRIBED = "210800025"
UNKNOWN = "210800033"
COMMUNE = "210800041"
EPCI = "240800862"


async def _post(api: httpx.AsyncClient, tokens: TokenFactory, siren: str) -> httpx.Response:
    return await api.post(
        "/v1/transfers",
        content=b"PK\x03\x04 not read before the subscription is checked",
        headers={**bearer(tokens, siren, SCOPES), "Content-Type": "application/zip"},
    )


async def _counts(app: FastAPI) -> tuple[int, int, int]:
    database = app.state.runtime.database
    return (
        await count_rows(database, "archive"),
        await count_rows(database, "logbook_entry"),
        await count_rows(database, "kanol_outbox"),
    )


async def test_an_organisation_not_subscribed_to_the_archive_is_refused(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    database = archive_app.state.runtime.database
    await seed_organisation(database, UNSUBSCRIBED, services=("actes",), name="Commune d'Arreux")
    before = await _counts(archive_app)

    response = await _post(api, tokens, UNSUBSCRIBED)

    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"] == PROBLEMS + "not-subscribed"
    assert body["detail"] == (
        "The organisation Commune d'Arreux (210800025) is not subscribed to the service archive."
    )
    assert (body["siren"], body["service"]) == (UNSUBSCRIBED, "archive")
    assert await _counts(archive_app) == before


async def test_an_organisation_unknown_to_the_archive_is_refused(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    before = await _counts(archive_app)

    response = await _post(api, tokens, UNKNOWN)

    assert response.status_code == 403, response.text
    assert response.json()["type"] == PROBLEMS + "unknown-organisation"
    assert await _counts(archive_app) == before


async def test_a_commune_covered_by_its_epci_gets_past_the_check(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    runtime: ServiceRuntime = archive_app.state.runtime
    events = (
        OrganisationRegistered(
            siren=COMMUNE,
            name="Commune d'Arreux",
            kind="commune",
            departement="008",
            parent_siren=EPCI,
        ),
        SubscriptionsChanged(
            siren=COMMUNE,
            subscriptions=(),
            effective=(EffectiveSubscription(service="archive", granted_by=EPCI),),
            services=("archive",),
        ),
    )
    # Through the outbox and the relay onto identity.events, as identity publishes them.
    async with runtime.database.session() as session:
        for event in events:
            outbox.publish(session, event, subject=COMMUNE, tenant=COMMUNE)
        await session.commit()

    async def projected() -> bool:
        async with runtime.database.session() as session:
            row = await session.get(OrganisationProjection, COMMUNE)
            return row is not None and row.services == ["archive"]

    await wait_until(projected, what="the commune in archive's projection")
    response = await api.post(
        "/v1/transfers",
        content=b"not a package",
        headers={**bearer(tokens, COMMUNE, SCOPES), "Content-Type": "text/plain"},
    )

    # Past the subscription check, the transfer itself is looked at (and refused here).
    assert response.status_code == 415, response.text
