"""The token endpoint, the JWKS, the metadata, and tokens checked as other services check them."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from sqlmodel import select

from kanol_common.auth import (
    InvalidToken,
    JwksVerifier,
    ServiceTokenProvider,
    StaticJwksVerifier,
    TokenRequestError,
)
from kanol_common.testing.auth import TokenFactory
from kanol_identity import credentials
from kanol_identity.__main__ import main
from kanol_identity.models import ApiClient, utcnow
from kanol_identity.testing import BASE_URL, Identity, basic


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


def _header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return header


async def _verifier(identity: Identity) -> StaticJwksVerifier:
    jwks = (await identity.http.get("/.well-known/jwks.json")).json()
    return StaticJwksVerifier(jwks, issuer=BASE_URL, audience=identity.settings.token_audience)


class TestClientCredentials:
    async def test_issues_a_verifiable_token(self, identity: Identity) -> None:
        siren, client_id, secret = await identity.add_client("actes:write actes:read")

        response = await identity.token_response(client_id, secret)

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        assert body["scope"] == "actes:read actes:write"
        claims = _claims(body["access_token"])
        assert claims["exp"] - claims["iat"] == 900
        assert {claims["sub"], claims["client_id"]} == {client_id}
        assert _header(body["access_token"])["alg"] == "RS256"
        caller = await (await _verifier(identity)).verify(body["access_token"])
        assert caller.siren == siren
        assert caller.client_id == client_id
        assert caller.scopes == {"actes:write", "actes:read"}
        assert caller.token_id == claims["jti"]

    async def test_accepts_client_secret_post(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("archive:read")

        response = await identity.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )

        assert response.status_code == 200, response.text

    async def test_a_client_id_differing_from_basics_is_invalid_request(
        self, identity: Identity
    ) -> None:
        _, client_id, secret = await identity.add_client("actes:read")

        response = await identity.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": "someone-else"},
            headers=basic(client_id, secret),
        )

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    async def test_bad_secret_is_invalid_client(self, identity: Identity) -> None:
        _, client_id, _ = await identity.add_client("actes:read")

        response = await identity.token_response(client_id, "not-the-secret")

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")

    async def test_a_rotated_secret_is_refused_though_recently_verified(
        self, identity: Identity
    ) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        assert (await identity.token_response(client_id, secret)).status_code == 200
        async with identity.app.state.runtime.database.session() as session:
            result = await session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
            client = result.one()
            client.secret_hash = await credentials.hash_secret("the new secret")
            session.add(client)
            await session.commit()

        old = await identity.token_response(client_id, secret)
        new = await identity.token_response(client_id, "the new secret")

        assert old.status_code == 401
        assert new.status_code == 200

    async def test_unknown_client_is_invalid_client(self, identity: Identity) -> None:
        response = await identity.token_response("nobody-such", "whatever")

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    async def test_revoked_client_is_refused(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        async with identity.app.state.runtime.database.session() as session:
            result = await session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
            client = result.one()
            client.revoked_at = utcnow()
            session.add(client)
            await session.commit()

        response = await identity.token_response(client_id, secret)

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    async def test_scope_narrows_to_a_subset(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:write actes:read archive:read")

        response = await identity.token_response(client_id, secret, scope="actes:read")

        assert response.status_code == 200
        assert response.json()["scope"] == "actes:read"
        assert _claims(response.json()["access_token"])["scope"] == "actes:read"

    async def test_scope_beyond_the_clients_is_invalid_scope(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")

        response = await identity.token_response(client_id, secret, scope="actes:read actes:write")

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"
        assert "actes:write" in response.json()["error_description"]

    async def test_unsupported_grant_type(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")

        response = await identity.http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": "u", "password": "p"},
            headers=basic(client_id, secret),
        )

        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"

    @pytest.mark.parametrize(
        ("content", "content_type"),
        [
            ("grant_type=client_credentials&grant_type=client_credentials", "form"),
            ('{"grant_type": "client_credentials"}', "application/json"),
            ("scope=actes:read", "form"),
        ],
    )
    async def test_malformed_requests_are_invalid_request(
        self, identity: Identity, content: str, content_type: str
    ) -> None:
        media_type = "application/x-www-form-urlencoded" if content_type == "form" else content_type

        response = await identity.http.post(
            "/oauth/token", content=content, headers={"Content-Type": media_type}
        )

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


class TestPublishedKeys:
    async def test_jwks_holds_public_keys_only(self, identity: Identity) -> None:
        response = await identity.http.get("/.well-known/jwks.json")

        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=300"
        keys = response.json()["keys"]
        assert keys
        for key in keys:
            assert key["kty"] == "RSA"
            assert key["alg"] == "RS256"
            assert key["use"] == "sig"
            assert key["kid"]
            assert {"n", "e"} <= key.keys()
            assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()

    async def test_metadata(self, identity: Identity) -> None:
        response = await identity.http.get("/.well-known/oauth-authorization-server")

        body = response.json()
        assert body["issuer"] == BASE_URL
        assert body["token_endpoint"] == f"{BASE_URL}/oauth/token"
        assert body["jwks_uri"] == f"{BASE_URL}/.well-known/jwks.json"
        assert body["grant_types_supported"] == [
            "client_credentials",
            "authorization_code",
            "refresh_token",
        ]
        assert set(body["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        }
        assert "actes:write" in body["scopes_supported"]


class TestVerificationAgainstIdentity:
    async def test_refuses_a_forged_signature_under_identitys_kid(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        genuine = await identity.token(client_id, secret)
        forger = TokenFactory(issuer=BASE_URL, kid=_header(genuine)["kid"])
        forged = forger.issue(_claims(genuine)["siren"], "actes:read actes:write")

        with pytest.raises(InvalidToken, match="signature is invalid"):
            await (await _verifier(identity)).verify(forged)

    async def test_refuses_alg_none(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        genuine = await identity.token(client_id, secret)
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        unsigned = f"{header}.{genuine.split('.')[1]}."

        with pytest.raises(InvalidToken, match="'none' is not accepted"):
            await (await _verifier(identity)).verify(unsigned)

    async def test_refuses_a_token_for_another_audience(self, identity: Identity) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        token = await identity.token(client_id, secret)
        verifier = StaticJwksVerifier(
            (await identity.http.get("/.well-known/jwks.json")).json(),
            issuer=BASE_URL,
            audience="another-platform",
        )

        with pytest.raises(InvalidToken, match="audience"):
            await verifier.verify(token)


class TestRotation:
    async def test_a_verifier_with_the_old_jwks_accepts_the_new_key(
        self, identity: Identity, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fetches: list[str] = []
        factory = identity.http_client_factory()

        def counting_client() -> httpx.AsyncClient:
            client = factory()
            client.event_hooks["request"].append(_record(fetches))
            return client

        verifier = JwksVerifier(
            f"{BASE_URL}/.well-known/jwks.json",
            issuer=BASE_URL,
            audience=identity.settings.token_audience,
            http_client=counting_client,
            min_refresh_interval=0.0,
        )
        _, client_id, secret = await identity.add_client("actes:read")
        before = await identity.token(client_id, secret)
        await verifier.verify(before)

        monkeypatch.setenv("KANOL_DATABASE_URL", identity.settings.resolved_database_url())
        assert await asyncio.to_thread(main, ["rotate-keys"]) == 0
        after = await identity.token(client_id, secret)

        assert _header(after)["kid"] != _header(before)["kid"]
        assert (await verifier.verify(after)).client_id == client_id
        assert (await verifier.verify(before)).client_id == client_id
        assert len(fetches) == 2


def _record(fetches: list[str]) -> Any:
    async def hook(request: httpx.Request) -> None:
        fetches.append(str(request.url))

    return hook


class TestServiceTokenProvider:
    async def test_gets_a_token_from_identity(self, identity: Identity) -> None:
        siren, client_id, secret = await identity.add_client("documents:read")
        provider = ServiceTokenProvider(
            identity.settings,
            client_id,
            secret,
            ["documents:read"],
            http_client=identity.http_client_factory(),
        )

        token = await provider.token()

        caller = await (await _verifier(identity)).verify(token)
        assert caller.siren == siren
        assert caller.scopes == {"documents:read"}
        assert await provider.token() == token

    async def test_says_why_identity_refused(self, identity: Identity) -> None:
        _, client_id, _ = await identity.add_client("documents:read")
        provider = ServiceTokenProvider(
            identity.settings,
            client_id,
            "wrong",
            "documents:read",
            auth_method="client_secret_post",
            http_client=identity.http_client_factory(),
        )

        with pytest.raises(TokenRequestError, match="invalid_client"):
            await provider.token()
