"""The admin API: scopes and problem bodies, organisations, API clients, events on Kafka."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer

from kanol_common.envelope import CloudEvent, decode, header_map
from kanol_common.events.identity import OrganisationRegistered, OrganisationUpdated
from kanol_identity.testing import Identity, new_siren

from .directory import outbox_events


def _organisation(siren: str, **changes: str) -> dict[str, str]:
    return {
        "siren": siren,
        "name": "Commune de Démo",
        "kind": "commune",
        "departement": "035",
        **changes,
    }


class TestAdminScope:
    async def test_no_token_is_401_problem(self, identity: Identity) -> None:
        response = await identity.http.get("/v1/organisations/213502388")

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["type"] == "https://kanol.fr/problems/unauthorized"
        assert "bearer token is required" in body["detail"]

    async def test_garbage_token_is_401_saying_why(self, identity: Identity) -> None:
        response = await identity.http.get(
            "/v1/organisations/213502388", headers={"Authorization": "Bearer abc.def"}
        )

        assert response.status_code == 401
        assert response.json()["detail"] == "The token is not a well-formed JWT"

    async def test_token_without_admin_scope_is_403_naming_it(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:write actes:read")
        token = await identity.token(client_id, secret)

        response = await identity.http.get(
            "/v1/organisations/213502388", headers={"Authorization": f"Bearer {token}"}
        )

        assert response.status_code == 403
        body = response.json()
        assert body["type"] == "https://kanol.fr/problems/forbidden"
        assert body["missing_scopes"] == ["identity:admin"]
        assert body["any_of_scopes"] == ["identity:admin", "org:admin"]


class TestOrganisations:
    async def test_register_then_read(self, identity: Identity) -> None:
        siren = new_siren()
        headers = await identity.admin_headers()

        created = await identity.http.post(
            "/v1/organisations", json=_organisation(siren, departement="02A"), headers=headers
        )
        read = await identity.http.get(f"/v1/organisations/{siren}", headers=headers)

        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"/v1/organisations/{siren}"
        assert read.status_code == 200
        assert read.json()["departement"] == "02A"
        assert read.json()["kind"] == "commune"

    async def test_the_envelope_codes_are_kept_changed_and_published(
        self, identity: Identity
    ) -> None:
        siren = new_siren()
        headers = await identity.admin_headers()
        body = {**_organisation(siren), "arrondissement": 3, "nature_collectivite": "25"}

        created = await identity.http.post("/v1/organisations", json=body, headers=headers)
        changed = await identity.http.patch(
            f"/v1/organisations/{siren}", json={"nature_collectivite": "32"}, headers=headers
        )
        refused = await identity.http.patch(
            f"/v1/organisations/{siren}", json={"arrondissement": 12}, headers=headers
        )

        assert created.status_code == 201, created.text
        assert (created.json()["arrondissement"], created.json()["nature_collectivite"]) == (
            3,
            "25",
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["nature_collectivite"] == "32"
        assert changed.json()["arrondissement"] == 3
        assert refused.status_code == 422
        [registered] = await outbox_events(identity, OrganisationRegistered, siren)
        assert (registered.arrondissement, registered.nature_collectivite) == (3, "25")
        [updated] = await outbox_events(identity, OrganisationUpdated, siren)
        assert (updated.arrondissement, updated.nature_collectivite) == (3, "32")

    async def test_twice_is_409(self, identity: Identity) -> None:
        siren = new_siren()
        headers = await identity.admin_headers()
        await identity.http.post("/v1/organisations", json=_organisation(siren), headers=headers)

        again = await identity.http.post(
            "/v1/organisations", json=_organisation(siren), headers=headers
        )

        assert again.status_code == 409
        assert again.json()["type"] == "https://kanol.fr/problems/organisation-already-registered"

    async def test_bad_siren_or_departement_is_422(self, identity: Identity) -> None:
        headers = await identity.admin_headers()
        siren = new_siren()
        wrong_checksum = siren[:8] + str((int(siren[8]) + 1) % 10)

        for body in (_organisation(wrong_checksum), _organisation(siren, departement="020")):
            response = await identity.http.post("/v1/organisations", json=body, headers=headers)
            assert response.status_code == 422, body

    async def test_unknown_is_404(self, identity: Identity) -> None:
        response = await identity.http.get(
            f"/v1/organisations/{new_siren()}", headers=await identity.admin_headers()
        )

        assert response.status_code == 404
        assert response.json()["type"] == "https://kanol.fr/problems/organisation-not-found"


async def _subscribed(identity: Identity, siren: str, *services: str) -> None:
    headers = await identity.admin_headers()
    created = await identity.http.post(
        "/v1/organisations", json=_organisation(siren), headers=headers
    )
    assert created.status_code == 201, created.text
    put = await identity.http.put(
        f"/v1/organisations/{siren}/subscriptions",
        json={"services": list(services)},
        headers=headers,
    )
    assert put.status_code == 200, put.text


class TestApiClients:
    async def test_registered_client_gets_a_token_with_its_secret(self, identity: Identity) -> None:
        siren = new_siren()
        headers = await identity.admin_headers()
        await _subscribed(identity, siren, "actes")

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients",
            json={"scopes": ["actes:write", "actes:read"]},
            headers=headers,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["siren"] == siren
        assert body["scopes"] == ["actes:read", "actes:write"]
        assert "secret_hash" not in body
        token = await identity.token(body["client_id"], body["client_secret"])
        assert token

    async def test_unknown_scope_is_422(self, identity: Identity) -> None:
        siren = new_siren()
        headers = await identity.admin_headers()
        await identity.http.post("/v1/organisations", json=_organisation(siren), headers=headers)

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients",
            json={"scopes": ["actes:write", "everything"]},
            headers=headers,
        )

        assert response.status_code == 422

    async def test_for_an_unknown_organisation_is_404(self, identity: Identity) -> None:
        response = await identity.http.post(
            f"/v1/organisations/{new_siren()}/api-clients",
            json={"scopes": ["actes:read"]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 404


async def test_organisation_registered_reaches_kafka(identity: Identity) -> None:
    siren = new_siren()
    topic = f"{identity.settings.kafka_topic_prefix}identity.events"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=identity.settings.kafka_bootstrap,
        group_id=f"test-identity-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        response = await identity.http.post(
            "/v1/organisations",
            json=_organisation(siren, name="Commune de Kafka"),
            headers=await identity.admin_headers(),
        )
        assert response.status_code == 201

        event = await asyncio.wait_for(_find_event(consumer, siren), timeout=30)
    finally:
        await consumer.stop()

    assert event.data == OrganisationRegistered(
        siren=siren, name="Commune de Kafka", kind="commune", departement="035"
    )
    assert event.tenant == siren
    assert event.source == "identity"


async def _find_event(consumer: AIOKafkaConsumer, siren: str) -> CloudEvent:
    async for record in consumer:
        headers = header_map(record.headers)
        if headers.get("ce_type") != OrganisationRegistered.event_type:
            continue
        event = decode(headers, record.value)
        if event.subject == siren:
            assert record.key == siren.encode()
            return event
    raise AssertionError("the consumer stopped")
