"""POST /v1/actes is refused, with the reason, to an organisation not subscribed to actes;
the projection of identity's organisations is filled from identity.events on Kafka."""

from __future__ import annotations

from kanol_common import outbox
from kanol_common.events.identity import (
    EffectiveSubscription,
    OrganisationRegistered,
    SubscriptionsChanged,
)
from kanol_common.organisations import OrganisationProjection
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import wait_until
from kanol_common.testing.organisations import seed_organisation

from .conftest import Actes

PROBLEMS = "https://kanol.fr/problems/"
COMMUNE = "210800017"
EPCI = "240800862"


def _headers(tokens: TokenFactory, siren: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(siren, 'actes:write actes:read')}"}


async def test_an_organisation_not_subscribed_to_actes_is_refused(actes: Actes) -> None:
    await seed_organisation(
        actes.app.state.runtime.database, COMMUNE, services=("archive",), name="Commune d'Aiglemont"
    )
    before = await actes.counts()

    response = await actes.submit(actes.metadata(), headers=_headers(actes.tokens, COMMUNE))

    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"] == PROBLEMS + "not-subscribed"
    assert body["detail"] == (
        "The organisation Commune d'Aiglemont (210800017) is not subscribed to the service actes."
    )
    assert (body["siren"], body["service"]) == (COMMUNE, "actes")
    assert await actes.counts() == before


async def test_an_organisation_unknown_to_the_service_is_refused(actes: Actes) -> None:
    before = await actes.counts()

    response = await actes.submit(actes.metadata(), headers=_headers(actes.tokens, COMMUNE))

    assert response.status_code == 403, response.text
    assert response.json()["type"] == PROBLEMS + "unknown-organisation"
    assert COMMUNE in response.json()["detail"]
    assert await actes.counts() == before


async def test_a_commune_covered_by_its_epci_may_submit_once_the_event_is_consumed(
    actes: Actes,
) -> None:
    runtime = actes.app.state.runtime
    await runtime.wait_assigned()
    events = (
        OrganisationRegistered(
            siren=COMMUNE,
            name="Commune d'Aiglemont",
            kind="commune",
            departement="008",
            parent_siren=EPCI,
        ),
        SubscriptionsChanged(
            siren=COMMUNE,
            subscriptions=(),
            effective=(EffectiveSubscription(service="actes", granted_by=EPCI),),
            services=("actes",),
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
            return row is not None and row.services == ["actes"]

    await wait_until(projected, what="the commune in actes-pes's projection")
    response = await actes.submit(actes.metadata(), headers=_headers(actes.tokens, COMMUNE))

    assert response.status_code in (201, 202), response.text
