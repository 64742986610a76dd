"""An organisation's admin administers its own organisation only: every admin endpoint,
called on another organisation (or on another organisation's agent or client), answers
404 and changes nothing. Operators' endpoints answer 403 to it on its own organisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kanol_identity.testing import Identity

from .directory import PROBLEMS, OrgAdmin, org_admin, outbox_size, register, subscribe


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: dict[str, Any] | None = None

    def url(self, siren: str, agent_id: str, client_id: str) -> str:
        return self.path.format(siren=siren, agent_id=agent_id, client_id=client_id)


AGENT = {
    "login": "intrus@example.fr",
    "display_name": "Intrus",
    "password": "a long enough password",
    "roles": ["actes:submitter"],
}
ENDPOINTS = [
    Endpoint("GET", "/v1/organisations/{siren}"),
    Endpoint("PATCH", "/v1/organisations/{siren}", {"name": "Renamed"}),
    Endpoint("GET", "/v1/organisations/{siren}/subscriptions"),
    Endpoint("PUT", "/v1/organisations/{siren}/subscriptions", {"services": []}),
    Endpoint("POST", "/v1/organisations/{siren}/agents", AGENT),
    Endpoint("GET", "/v1/organisations/{siren}/agents"),
    Endpoint("GET", "/v1/organisations/{siren}/agents/{agent_id}"),
    Endpoint("PATCH", "/v1/organisations/{siren}/agents/{agent_id}", {"roles": ["org:admin"]}),
    Endpoint("POST", "/v1/organisations/{siren}/agents/{agent_id}/deactivate"),
    Endpoint("POST", "/v1/organisations/{siren}/agents/{agent_id}/reactivate"),
    Endpoint("POST", "/v1/organisations/{siren}/agents/{agent_id}/totp"),
    Endpoint(
        "POST", "/v1/organisations/{siren}/agents/{agent_id}/totp/confirm", {"code": "123456"}
    ),
    Endpoint("DELETE", "/v1/organisations/{siren}/agents/{agent_id}/totp"),
    Endpoint("POST", "/v1/organisations/{siren}/api-clients", {"scopes": ["actes:write"]}),
    Endpoint("GET", "/v1/organisations/{siren}/api-clients"),
    Endpoint("GET", "/v1/organisations/{siren}/api-clients/{client_id}"),
    Endpoint(
        "PATCH", "/v1/organisations/{siren}/api-clients/{client_id}", {"scopes": ["actes:read"]}
    ),
    Endpoint("POST", "/v1/organisations/{siren}/api-clients/{client_id}/secret"),
    Endpoint("POST", "/v1/organisations/{siren}/api-clients/{client_id}/revoke"),
]
ITEM_ENDPOINTS = [e for e in ENDPOINTS if "{agent_id}" in e.path or "{client_id}" in e.path]
OPERATOR_ONLY = [ENDPOINTS[1], ENDPOINTS[3]]


@dataclass
class Victim:
    siren: str
    agent_id: str
    client_id: str


@dataclass
class World:
    admin: OrgAdmin
    victim: Victim


@pytest.fixture(scope="module")
async def world(identity: Identity) -> World:
    admin = await org_admin(identity)
    siren = await register(identity, name="Commune voisine")
    await subscribe(identity, siren, "actes", "archive")
    operator = await identity.admin_headers()
    agent = await identity.http.post(
        f"/v1/organisations/{siren}/agents",
        json={**AGENT, "login": "agent@voisine.fr"},
        headers=operator,
    )
    client = await identity.http.post(
        f"/v1/organisations/{siren}/api-clients", json={"scopes": ["actes:write"]}, headers=operator
    )
    assert agent.status_code == client.status_code == 201
    victim = Victim(siren, agent.json()["id"], client.json()["client_id"])
    return World(admin, victim)


async def _state(identity: Identity, victim: Victim) -> tuple[Any, ...]:
    """Everything an intruder could have changed, as an operator reads it."""
    operator = await identity.admin_headers()
    base = f"/v1/organisations/{victim.siren}"
    reads = [base, f"{base}/agents", f"{base}/api-clients"]
    bodies = [(await identity.http.get(url, headers=operator)).json() for url in reads]
    return (*bodies, await outbox_size(identity))


def test_every_admin_route_is_in_the_list(identity: Identity) -> None:
    paths: dict[str, dict[str, Any]] = identity.app.openapi()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/organisations/{siren}")
        for method in operations
    }

    assert routes == {(e.method, e.path) for e in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_another_organisation_is_not_found_and_unchanged(
    identity: Identity, world: World, endpoint: Endpoint
) -> None:
    victim = world.victim
    before = await _state(identity, victim)

    response = await identity.http.request(
        endpoint.method,
        endpoint.url(victim.siren, victim.agent_id, victim.client_id),
        json=endpoint.body,
        headers=world.admin.headers,
    )

    assert response.status_code == 404, response.text
    assert response.json()["type"] == PROBLEMS + "organisation-not-found"
    assert await _state(identity, victim) == before


@pytest.mark.parametrize("endpoint", ITEM_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_another_organisation_s_agent_or_client_under_its_own_is_not_found(
    identity: Identity, world: World, endpoint: Endpoint
) -> None:
    victim = world.victim
    before = await _state(identity, victim)

    response = await identity.http.request(
        endpoint.method,
        endpoint.url(world.admin.siren, victim.agent_id, victim.client_id),
        json=endpoint.body,
        headers=world.admin.headers,
    )

    assert response.status_code == 404, response.text
    assert response.json()["type"] in (
        PROBLEMS + "agent-not-found",
        PROBLEMS + "api-client-not-found",
    )
    assert await _state(identity, victim) == before


@pytest.mark.parametrize("endpoint", OPERATOR_ONLY, ids=lambda e: f"{e.method} {e.path}")
async def test_operators_endpoints_are_403_on_its_own_organisation(
    identity: Identity, world: World, endpoint: Endpoint
) -> None:
    response = await identity.http.request(
        endpoint.method,
        endpoint.url(world.admin.siren, "-", "-"),
        json=endpoint.body,
        headers=world.admin.headers,
    )

    assert response.status_code == 403
    assert response.json()["type"] == PROBLEMS + "operator-only"


async def test_registering_organisations_is_for_operators(identity: Identity, world: World) -> None:
    response = await identity.http.post(
        "/v1/organisations",
        json={"siren": "213502388", "name": "X", "kind": "commune", "departement": "035"},
        headers=world.admin.headers,
    )

    assert response.status_code == 403
    assert response.json()["type"] == PROBLEMS + "operator-only"


async def test_the_list_shows_an_org_admin_its_own_organisation_only(
    identity: Identity, world: World
) -> None:
    response = await identity.http.get("/v1/organisations", headers=world.admin.headers)

    assert response.status_code == 200
    assert [item["siren"] for item in response.json()["items"]] == [world.admin.siren]


async def test_operators_page_through_every_organisation(identity: Identity, world: World) -> None:
    operator = await identity.admin_headers()
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (
            await identity.http.get("/v1/organisations", params=params, headers=operator)
        ).json()
        seen += [item["siren"] for item in page["items"]]
        after = page["next_after"]
        if after is None:
            break

    assert seen == sorted(seen)
    assert {world.admin.siren, world.victim.siren} <= set(seen)
