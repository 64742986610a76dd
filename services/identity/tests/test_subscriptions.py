"""Subscriptions: an EPCI's cover its communes, their CCAS and its CIAS; every change of an
organisation's effective subscriptions is published with where each comes from."""

from __future__ import annotations

from typing import Any

from kanol_common.events.identity import (
    EffectiveSubscription,
    OrganisationRegistered,
    SubscriptionsChanged,
)
from kanol_identity.testing import Identity

from .directory import PROBLEMS, outbox_events, register, subscribe


def _effective(body: dict[str, Any]) -> dict[str, str]:
    return {item["service"]: item["granted_by"] for item in body["effective_subscriptions"]}


async def _read(identity: Identity, siren: str) -> dict[str, Any]:
    response = await identity.http.get(
        f"/v1/organisations/{siren}", headers=await identity.admin_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class Territory:
    """An EPCI, one of its communes with its CCAS, and a CIAS of the EPCI."""

    def __init__(self, epci: str, commune: str, ccas: str, cias: str) -> None:
        self.epci, self.commune, self.ccas, self.cias = epci, commune, ccas, cias


async def _territory(identity: Identity) -> Territory:
    epci = await register(identity, kind="epci", name="Rennes Métropole")
    commune = await register(identity, kind="commune", parent_siren=epci)
    ccas = await register(identity, kind="ccas", parent_siren=commune)
    cias = await register(identity, kind="ccas", parent_siren=epci)
    return Territory(epci, commune, ccas, cias)


class TestEpciCoverage:
    async def test_an_epci_subscription_covers_its_communes_their_ccas_and_its_cias(
        self, identity: Identity
    ) -> None:
        place = await _territory(identity)
        await subscribe(identity, place.commune, "archive")

        await subscribe(identity, place.epci, "actes", "pes")

        commune = await _read(identity, place.commune)
        assert commune["subscriptions"] == ["archive"]
        assert _effective(commune) == {
            "actes": place.epci,
            "pes": place.epci,
            "archive": place.commune,
        }
        # A commune's own subscription does not cover its CCAS; its EPCI's does.
        assert _effective(await _read(identity, place.ccas)) == {
            "actes": place.epci,
            "pes": place.epci,
        }
        assert _effective(await _read(identity, place.cias)) == {
            "actes": place.epci,
            "pes": place.epci,
        }

    async def test_each_covered_organisation_gets_its_event(self, identity: Identity) -> None:
        place = await _territory(identity)

        await subscribe(identity, place.epci, "actes")

        expected = (EffectiveSubscription(service="actes", granted_by=place.epci),)
        for siren in (place.commune, place.ccas, place.cias):
            events = await outbox_events(identity, SubscriptionsChanged, siren)
            assert events == [
                SubscriptionsChanged(
                    siren=siren, subscriptions=(), effective=expected, services=("actes",)
                )
            ]
        own = await outbox_events(identity, SubscriptionsChanged, place.epci)
        assert [event.subscriptions for event in own] == [("actes",)]

    async def test_the_same_subscriptions_again_publish_nothing(self, identity: Identity) -> None:
        place = await _territory(identity)
        await subscribe(identity, place.epci, "actes", "archive")

        await subscribe(identity, place.epci, "archive", "actes")

        assert len(await outbox_events(identity, SubscriptionsChanged, place.epci)) == 1
        assert len(await outbox_events(identity, SubscriptionsChanged, place.commune)) == 1

    async def test_a_commune_leaving_its_epci_loses_what_the_epci_gave(
        self, identity: Identity
    ) -> None:
        place = await _territory(identity)
        await subscribe(identity, place.epci, "actes")
        await subscribe(identity, place.commune, "archive")

        response = await identity.http.patch(
            f"/v1/organisations/{place.commune}",
            json={"parent_siren": None},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 200, response.text
        assert _effective(response.json()) == {"archive": place.commune}
        assert _effective(await _read(identity, place.ccas)) == {}
        latest = (await outbox_events(identity, SubscriptionsChanged, place.commune))[-1]
        assert latest.services == ("archive",)
        assert (await outbox_events(identity, SubscriptionsChanged, place.ccas))[-1].services == ()

    async def test_a_commune_registered_under_a_subscribed_epci_is_covered_at_once(
        self, identity: Identity
    ) -> None:
        epci = await register(identity, kind="epci")
        await subscribe(identity, epci, "ged")

        commune = await register(identity, kind="commune", parent_siren=epci)

        registered = await outbox_events(identity, OrganisationRegistered, commune)
        assert registered[0].parent_siren == epci
        changed = await outbox_events(identity, SubscriptionsChanged, commune)
        assert [event.services for event in changed] == [("ged",)]

    async def test_an_epci_ending_a_subscription_ends_it_for_its_communes(
        self, identity: Identity
    ) -> None:
        place = await _territory(identity)
        await subscribe(identity, place.epci, "actes", "ads")

        await subscribe(identity, place.epci, "ads")

        assert _effective(await _read(identity, place.commune)) == {"ads": place.epci}


class TestParents:
    async def test_a_commune_belongs_to_an_epci_only(self, identity: Identity) -> None:
        region = await register(identity, kind="region", departement="035")
        response = await identity.http.post(
            "/v1/organisations",
            json={
                "siren": "213502388",
                "name": "Rennes",
                "kind": "commune",
                "departement": "035",
                "parent_siren": region,
            },
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422, response.text
        assert response.json()["type"] == PROBLEMS + "organisation-parent-invalid"
        assert "must be a epci, not a region" in response.json()["detail"]

    async def test_an_unknown_parent_is_refused(self, identity: Identity) -> None:
        response = await identity.http.post(
            "/v1/organisations",
            json={
                "siren": "213502396",
                "name": "Commune",
                "kind": "commune",
                "departement": "035",
                "parent_siren": "243500139",
            },
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422, response.text
        assert "register the parent first" in response.json()["detail"]

    async def test_an_epci_with_communes_cannot_become_a_commune(self, identity: Identity) -> None:
        place = await _territory(identity)

        response = await identity.http.patch(
            f"/v1/organisations/{place.epci}",
            json={"kind": "syndicat"},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422, response.text
        assert (await _read(identity, place.epci))["kind"] == "epci"

    async def test_an_unknown_service_is_422(self, identity: Identity) -> None:
        siren = await register(identity)

        response = await identity.http.put(
            f"/v1/organisations/{siren}/subscriptions",
            json={"services": ["actes", "teleservices"]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422
