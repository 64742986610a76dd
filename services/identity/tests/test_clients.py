"""API clients: scopes within the organisation's subscriptions, secrets shown once and
rotated, private_key_jwt public keys, redirect URIs, revocation."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from kanol_common.events.identity import ApiClientRegistered, ApiClientRevoked
from kanol_identity.testing import Identity

from .directory import PROBLEMS, org_admin, outbox_events, register, subscribe


async def _org(identity: Identity, *services: str, kind: str = "commune") -> str:
    siren = await register(identity, kind=kind)
    await subscribe(identity, siren, *services)
    return siren


async def _client(identity: Identity, siren: str, **body: Any) -> dict[str, Any]:
    response = await identity.http.post(
        f"/v1/organisations/{siren}/api-clients",
        json={"scopes": ["actes:write"], **body},
        headers=await identity.admin_headers(),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestScopes:
    async def test_a_scope_of_a_service_not_subscribed_is_refused(self, identity: Identity) -> None:
        siren = await _org(identity, "actes")

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients",
            json={"scopes": ["actes:write", "pes:write", "archive:read"]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422
        body = response.json()
        assert body["type"] == PROBLEMS + "not-subscribed"
        assert body["services"] == ["archive", "pes"]
        assert f"The organisation {siren} is not subscribed to: archive pes" == body["detail"]

    async def test_an_epci_subscription_lets_its_commune_have_the_scope(
        self, identity: Identity
    ) -> None:
        epci = await _org(identity, "pes", kind="epci")
        commune = await register(identity, kind="commune", parent_siren=epci)

        client = await _client(identity, commune, scopes=["pes:write"])

        assert client["scopes"] == ["pes:write"]

    async def test_an_org_admin_may_not_grant_platform_scopes(self, identity: Identity) -> None:
        admin = await org_admin(identity)

        for scope in ("identity:admin", "documents:read", "archive:admin"):
            response = await identity.http.post(
                f"/v1/organisations/{admin.siren}/api-clients",
                json={"scopes": ["actes:write", scope]},
                headers=admin.headers,
            )
            assert response.status_code == 403, scope
            assert response.json()["type"] == PROBLEMS + "not-grantable"

    async def test_an_org_admin_registers_a_client_of_its_own(self, identity: Identity) -> None:
        admin = await org_admin(identity)

        response = await identity.http.post(
            f"/v1/organisations/{admin.siren}/api-clients",
            json={"scopes": ["actes:write", "org:admin"], "name": "Logiciel métier"},
            headers=admin.headers,
        )

        assert response.status_code == 201, response.text
        assert response.json()["siren"] == admin.siren
        token = await identity.token(response.json()["client_id"], response.json()["client_secret"])
        assert token

    async def test_an_operator_grants_service_scopes_to_the_syndicate(
        self, identity: Identity
    ) -> None:
        siren = await _org(identity)

        client = await _client(identity, siren, scopes=["documents:read"])

        assert client["scopes"] == ["documents:read"]
        events = await outbox_events(identity, ApiClientRegistered, client["client_id"])
        assert events[0].scopes == ("documents:read",)


class TestSecrets:
    async def test_rotation_shows_the_new_secret_once_and_ends_the_old(
        self, identity: Identity
    ) -> None:
        siren = await _org(identity, "actes")
        client = await _client(identity, siren)
        url = f"/v1/organisations/{siren}/api-clients/{client['client_id']}"

        rotated = await identity.http.post(f"{url}/secret", headers=await identity.admin_headers())
        read = await identity.http.get(url, headers=await identity.admin_headers())

        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["client_secret"]
        assert new_secret and new_secret != client["client_secret"]
        assert rotated.json()["secret_rotated_at"]
        assert "client_secret" not in read.json()
        old = await identity.token_response(client["client_id"], client["client_secret"])
        assert old.status_code == 401
        assert await identity.token(client["client_id"], new_secret)

    async def test_revocation_is_published_once_and_refuses_tokens(
        self, identity: Identity
    ) -> None:
        siren = await _org(identity, "actes")
        client = await _client(identity, siren)
        url = f"/v1/organisations/{siren}/api-clients/{client['client_id']}"
        headers = await identity.admin_headers()

        first = await identity.http.post(f"{url}/revoke", headers=headers)
        second = await identity.http.post(f"{url}/revoke", headers=headers)
        rotate = await identity.http.post(f"{url}/secret", headers=headers)

        assert first.status_code == second.status_code == 200
        assert first.json()["revoked_at"] == second.json()["revoked_at"] is not None
        refused = await identity.token_response(client["client_id"], client["client_secret"])
        assert refused.status_code == 401
        assert await outbox_events(identity, ApiClientRevoked, client["client_id"]) == [
            ApiClientRevoked(client_id=client["client_id"], siren=siren)
        ]
        assert rotate.status_code == 409
        assert rotate.json()["type"] == PROBLEMS + "api-client-revoked"


class TestPrivateKeyJwt:
    async def test_a_pem_public_key_is_stored_as_a_jwk_set(self, identity: Identity) -> None:
        siren = await _org(identity, "actes")
        key = RSAKey.generate_key(2048)

        client = await _client(
            identity,
            siren,
            auth_method="private_key_jwt",
            public_key_pem=key.as_pem(private=False).decode(),
        )

        assert client["client_secret"] is None
        assert client["auth_method"] == "private_key_jwt"
        [jwk] = client["jwks"]["keys"]
        assert jwk["kty"] == "RSA" and jwk["kid"] == key.thumbprint()
        assert "d" not in jwk

    async def test_a_jwk_set_keeps_its_kids(self, identity: Identity) -> None:
        siren = await _org(identity, "actes")
        key = ECKey.generate_key("P-256", parameters={"kid": "software-2026"})

        client = await _client(
            identity,
            siren,
            auth_method="private_key_jwt",
            jwks={"keys": [key.as_dict(private=False)]},
        )

        assert [jwk["kid"] for jwk in client["jwks"]["keys"]] == ["software-2026"]

    @pytest.mark.parametrize("which", ["private", "none", "garbage"])
    async def test_unusable_keys_are_refused(self, identity: Identity, which: str) -> None:
        siren = await _org(identity, "actes")
        key = RSAKey.generate_key(2048)
        bodies: dict[str, dict[str, Any]] = {
            "private": {"jwks": {"keys": [key.as_dict(private=True)]}},
            "none": {},
            "garbage": {"public_key_pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n"},
        }

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients",
            json={"scopes": ["actes:write"], "auth_method": "private_key_jwt", **bodies[which]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422, response.text
        assert response.json()["type"] == PROBLEMS + "client-key-invalid"

    async def test_a_key_client_has_no_secret_to_rotate(self, identity: Identity) -> None:
        siren = await _org(identity, "actes")
        key = RSAKey.generate_key(2048)
        client = await _client(
            identity,
            siren,
            auth_method="private_key_jwt",
            public_key_pem=key.as_pem(private=False).decode(),
        )

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients/{client['client_id']}/secret",
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422


class TestRedirectUris:
    async def test_https_and_loopback_are_kept(self, identity: Identity) -> None:
        siren = await _org(identity, "actes")

        client = await _client(
            identity,
            siren,
            redirect_uris=["https://logiciel.example/callback", "http://127.0.0.1:8765/cb"],
        )

        assert client["redirect_uris"] == [
            "https://logiciel.example/callback",
            "http://127.0.0.1:8765/cb",
        ]

    @pytest.mark.parametrize("uri", ["http://logiciel.example/cb", "https://a.example/cb#x"])
    async def test_others_are_422(self, identity: Identity, uri: str) -> None:
        siren = await _org(identity, "actes")

        response = await identity.http.post(
            f"/v1/organisations/{siren}/api-clients",
            json={"scopes": ["actes:write"], "redirect_uris": [uri]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 422

    async def test_an_update_replaces_them_and_the_scopes(self, identity: Identity) -> None:
        siren = await _org(identity, "actes", "archive")
        client = await _client(identity, siren)

        response = await identity.http.patch(
            f"/v1/organisations/{siren}/api-clients/{client['client_id']}",
            json={"redirect_uris": ["https://new.example/cb"], "scopes": ["archive:read"]},
            headers=await identity.admin_headers(),
        )

        assert response.status_code == 200, response.text
        assert response.json()["redirect_uris"] == ["https://new.example/cb"]
        assert response.json()["scopes"] == ["archive:read"]
