"""Token verification, the require_scopes dependency and the service token provider."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from kanol_common.auth import (
    Caller,
    InvalidToken,
    JwksVerifier,
    KeySetUnavailable,
    ServiceTokenProvider,
    TokenRequestError,
    require_scopes,
)
from kanol_common.http import create_app
from kanol_common.settings import CommonSettings
from kanol_common.siren import is_valid_siren, is_valid_siret
from kanol_common.testing.auth import TokenFactory

SIREN = "213502388"
JWKS_URL = "http://identity.test/.well-known/jwks.json"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def tokens() -> TokenFactory:
    return TokenFactory()


class TestStaticVerifier:
    async def test_accepts_a_good_token(self, tokens: TokenFactory) -> None:
        token = tokens.issue(SIREN, "actes:write actes:read", client_id="demo-mairie")

        caller = await tokens.verifier().verify(token)

        assert caller.client_id == "demo-mairie"
        assert caller.siren == SIREN
        assert caller.scopes == frozenset({"actes:write", "actes:read"})
        assert caller.token_id

    async def test_a_verified_token_expires_all_the_same(self, tokens: TokenFactory) -> None:
        verifier = tokens.verifier()
        verifier.leeway = 0
        token = tokens.issue(SIREN, "actes:read", expires_in=1)
        await verifier.verify(token)

        await asyncio.sleep(2.1)

        with pytest.raises(InvalidToken, match="expired"):
            await verifier.verify(token)

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"expires_in": -120}, "expired"),
            ({"aud": "someone-else"}, "audience"),
            ({"iss": "https://evil.example"}, "issued"),
            ({"jti": None}, "lacks required claims: jti"),
            ({"scope": None}, "lacks required claims: scope"),
            ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ],
    )
    async def test_refuses_bad_claims(
        self, tokens: TokenFactory, overrides: dict[str, Any], reason: str
    ) -> None:
        token = tokens.issue(SIREN, "actes:read", **overrides)

        with pytest.raises(InvalidToken, match=reason):
            await tokens.verifier().verify(token)

    async def test_refuses_alg_none(self, tokens: TokenFactory) -> None:
        good = tokens.issue(SIREN, "actes:read")
        claims = good.split(".")[1]
        unsigned = f"{_b64({'alg': 'none', 'kid': tokens.kid})}.{claims}."

        with pytest.raises(InvalidToken, match="algorithm 'none' is not accepted"):
            await tokens.verifier().verify(unsigned)

    async def test_refuses_hs256_keyed_with_the_public_key(self, tokens: TokenFactory) -> None:
        good = tokens.issue(SIREN, "actes:read")
        header = _b64({"alg": "HS256", "kid": tokens.kid})
        forged = f"{header}.{good.split('.')[1]}.c2lnbmF0dXJl"

        with pytest.raises(InvalidToken, match="'HS256' is not accepted"):
            await tokens.verifier().verify(forged)

    async def test_refuses_a_key_outside_the_key_set(self, tokens: TokenFactory) -> None:
        stranger = TokenFactory()

        with pytest.raises(InvalidToken, match="signing key is unknown"):
            await tokens.verifier().verify(stranger.issue(SIREN, "actes:read"))

    async def test_refuses_a_forged_signature_under_a_known_kid(self, tokens: TokenFactory) -> None:
        forger = TokenFactory(kid=tokens.kid)

        with pytest.raises(InvalidToken, match="signature is invalid"):
            await tokens.verifier().verify(forger.issue(SIREN, "actes:read"))

    async def test_refuses_garbage(self, tokens: TokenFactory) -> None:
        with pytest.raises(InvalidToken, match="well-formed"):
            await tokens.verifier().verify("not-a-jwt")


class _JwksServer:
    """Serves a key set that the test changes, and counts the fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.failing = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.failing:
            return httpx.Response(503)
        return httpx.Response(200, json=self.jwks)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class TestJwksVerifier:
    def _verifier(self, server: _JwksServer, tokens: TokenFactory, **kwargs: Any) -> JwksVerifier:
        return JwksVerifier(
            JWKS_URL,
            issuer=tokens.issuer,
            audience=tokens.audience,
            http_client=server.client,
            **kwargs,
        )

    async def test_fetches_once_and_caches(self, tokens: TokenFactory) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        verifier = self._verifier(server, tokens)

        for _ in range(3):
            await verifier.verify(tokens.issue(SIREN, "actes:read"))

        assert server.fetches == 1

    async def test_refreshes_once_on_an_unknown_kid(self, tokens: TokenFactory) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        verifier = self._verifier(server, tokens, min_refresh_interval=0.0)
        await verifier.verify(tokens.issue(SIREN, "actes:read"))
        rotated = TokenFactory()
        server.jwks = {"keys": [*tokens.jwks()["keys"], *rotated.jwks()["keys"]]}

        caller = await verifier.verify(rotated.issue(SIREN, "actes:read"))

        assert caller.siren == SIREN
        assert server.fetches == 2

    async def test_an_unknown_kid_refreshes_at_most_once_per_interval(
        self, tokens: TokenFactory
    ) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        verifier = self._verifier(server, tokens, min_refresh_interval=0.0)
        stranger = TokenFactory()

        for _ in range(5):
            with pytest.raises(InvalidToken, match="signing key is unknown"):
                await verifier.verify(stranger.issue(SIREN, "actes:read"))

        # The first fetch loads the set; the stranger's kid earns a single refresh.
        assert server.fetches == 2

    async def test_keeps_a_stale_set_while_identity_fails(self, tokens: TokenFactory) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        verifier = self._verifier(server, tokens, max_age=0.0)
        await verifier.verify(tokens.issue(SIREN, "actes:read"))
        server.failing = True

        caller = await verifier.verify(tokens.issue(SIREN, "actes:read"))

        assert caller.siren == SIREN
        assert server.fetches == 2

    async def test_a_verified_token_is_refused_once_its_key_is_rotated_out(
        self, tokens: TokenFactory
    ) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        verifier = self._verifier(server, tokens, max_age=0.0)
        token = tokens.issue(SIREN, "actes:read")
        await verifier.verify(token)
        await verifier.verify(token)
        server.jwks = dict(TokenFactory().jwks())

        with pytest.raises(InvalidToken, match="signing key is unknown"):
            await verifier.verify(token)

    async def test_no_key_set_at_all_is_unavailable(self, tokens: TokenFactory) -> None:
        server = _JwksServer(dict(tokens.jwks()))
        server.failing = True
        verifier = self._verifier(server, tokens)

        for _ in range(3):
            with pytest.raises(KeySetUnavailable):
                await verifier.verify(tokens.issue(SIREN, "actes:read"))

        # Failures are not retried on every request.
        assert server.fetches == 1


def _protected_app(tokens: TokenFactory) -> FastAPI:
    router = APIRouter()

    @router.get("/protected")
    async def protected(
        caller: Annotated[Caller, Depends(require_scopes("actes:write", "actes:read"))],
    ) -> dict[str, str]:
        return {"siren": caller.siren}

    app = create_app(CommonSettings(service_name="auth-test"), title="t", routers=[router])
    app.state.token_verifier = tokens.verifier()
    return app


class TestRequireScopes:
    async def _get(self, tokens: TokenFactory, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=_protected_app(tokens))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/protected", headers=headers)

    async def test_lets_a_caller_with_every_scope_in(self, tokens: TokenFactory) -> None:
        token = tokens.issue(SIREN, "actes:write actes:read")

        response = await self._get(tokens, {"Authorization": f"Bearer {token}"})

        assert response.status_code == 200
        assert response.json() == {"siren": SIREN}

    async def test_no_token_is_401_with_a_bearer_challenge(self, tokens: TokenFactory) -> None:
        response = await self._get(tokens, {})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "https://kanol.fr/problems/unauthorized"

    async def test_expired_token_says_so(self, tokens: TokenFactory) -> None:
        token = tokens.issue(SIREN, "actes:write actes:read", expires_in=-300)

        response = await self._get(tokens, {"Authorization": f"Bearer {token}"})

        assert response.status_code == 401
        assert response.json()["detail"] == "The token has expired"

    async def test_missing_scope_is_403_naming_it(self, tokens: TokenFactory) -> None:
        token = tokens.issue(SIREN, "actes:read")

        response = await self._get(tokens, {"Authorization": f"Bearer {token}"})

        assert response.status_code == 403
        body = response.json()
        assert body["type"] == "https://kanol.fr/problems/forbidden"
        assert body["missing_scopes"] == ["actes:write"]
        assert "actes:write" in body["detail"]


async def test_without_a_verifier_one_is_built_from_settings(tokens: TokenFactory) -> None:
    router = APIRouter()

    @router.get("/protected")
    async def protected(caller: Annotated[Caller, Depends(require_scopes())]) -> str:
        return caller.siren

    # Nothing listens on port 9: the key set cannot be fetched, which is a 503, not a 401.
    settings = CommonSettings(service_name="auth-test", identity_url="http://127.0.0.1:9")
    app = create_app(settings, title="t", routers=[router])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        token = tokens.issue(SIREN, "actes:read")
        response = await client.get("/protected", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 503
    assert isinstance(app.state.token_verifier, JwksVerifier)
    assert app.state.token_verifier.jwks_url == "http://127.0.0.1:9/.well-known/jwks.json"


class _TokenEndpoint:
    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {"access_token": "t-1", "token_type": "Bearer", "expires_in": 900}
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class TestServiceTokenProvider:
    async def test_asks_with_basic_auth_and_caches(self) -> None:
        endpoint = _TokenEndpoint()
        provider = ServiceTokenProvider(
            CommonSettings(identity_url="http://identity.test/"),
            "archive-service",
            "s3cret:with/odd&chars",
            ["documents:read"],
            http_client=endpoint.client,
        )

        assert await provider.token() == "t-1"
        assert await provider.token() == "t-1"

        assert len(endpoint.requests) == 1
        request = endpoint.requests[0]
        assert str(request.url) == "http://identity.test/oauth/token"
        form = parse_qs(request.content.decode())
        assert form == {"grant_type": ["client_credentials"], "scope": ["documents:read"]}
        scheme, _, encoded = request.headers["authorization"].partition(" ")
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        assert scheme == "Basic"
        assert (unquote(client_id), unquote(secret)) == ("archive-service", "s3cret:with/odd&chars")

    async def test_renews_a_token_close_to_expiry(self) -> None:
        endpoint = _TokenEndpoint(body={"access_token": "short", "expires_in": 10})
        provider = ServiceTokenProvider(
            CommonSettings(), "c", "s", "documents:read", http_client=endpoint.client
        )

        await provider.token()
        await provider.token()

        assert len(endpoint.requests) == 2

    async def test_a_refusal_raises_with_the_oauth_error(self) -> None:
        endpoint = _TokenEndpoint(401, {"error": "invalid_client"})
        provider = ServiceTokenProvider(
            CommonSettings(), "c", "wrong", "documents:read", http_client=endpoint.client
        )

        with pytest.raises(TokenRequestError, match="invalid_client"):
            await provider.token()


class TestSiren:
    @pytest.mark.parametrize("siren", ["213502388", "356000000", "243500139"])
    def test_valid(self, siren: str) -> None:
        assert is_valid_siren(siren)

    @pytest.mark.parametrize("siren", ["213502389", "21350238", "2135023880", "21350238A", ""])
    def test_invalid(self, siren: str) -> None:
        assert not is_valid_siren(siren)

    def test_siret(self) -> None:
        assert is_valid_siret("21350238800019")
        assert not is_valid_siret("21350238800018")
