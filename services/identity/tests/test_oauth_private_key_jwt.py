"""Client authentication by private_key_jwt (RFC 7523): what is accepted and every refusal."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from kanol_identity.oauth.clients import CLIENT_ASSERTION_TYPE
from kanol_identity.oauth.testing import add_key_client, client_assertion
from kanol_identity.testing import BASE_URL, Identity

TOKEN_ENDPOINT = f"{BASE_URL}/oauth/token"


async def _key_client(identity: Identity) -> tuple[str, ECKey]:
    siren, _, _ = await identity.add_client("actes:read")
    return await add_key_client(
        identity.app.state.runtime.database, siren, ["actes:read", "actes:write"]
    )


async def _token(identity: Identity, assertion: str, **form: str) -> httpx.Response:
    return await identity.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            **form,
        },
    )


async def test_a_signed_assertion_gets_a_token(identity: Identity) -> None:
    client_id, key = await _key_client(identity)

    response = await _token(identity, client_assertion(key, client_id, TOKEN_ENDPOINT))

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "actes:read actes:write"


async def test_a_replayed_jti_is_refused(identity: Identity) -> None:
    client_id, key = await _key_client(identity)
    assertion = client_assertion(key, client_id, TOKEN_ENDPOINT)
    assert (await _token(identity, assertion)).status_code == 200

    replayed = await _token(identity, assertion)

    assert replayed.status_code == 401
    assert replayed.json()["error"] == "invalid_client"
    assert "already used" in replayed.json()["error_description"]


@pytest.mark.parametrize(
    ("overrides", "lifetime"),
    [
        ({"aud": f"{BASE_URL}/oauth/introspect"}, 60),
        ({"aud": "https://another-server.example/token"}, 60),
        ({"sub": "someone-else"}, 60),
        ({}, -120),  # expired
        ({}, 3600),  # lives too long to be a one-request assertion
        ({"jti": None}, 60),
    ],
)
async def test_a_bad_assertion_is_invalid_client(
    identity: Identity, overrides: dict[str, Any], lifetime: int
) -> None:
    client_id, key = await _key_client(identity)
    assertion = client_assertion(key, client_id, TOKEN_ENDPOINT, lifetime=lifetime, **overrides)
    if overrides.get("jti", "") is None:
        claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_ENDPOINT}
        assertion = jwt.encode({"alg": "ES256"}, {**claims, "exp": int(time.time()) + 60}, key)

    response = await _token(identity, assertion)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_a_key_not_registered_is_refused(identity: Identity) -> None:
    client_id, _ = await _key_client(identity)
    stranger = ECKey.generate_key("P-256", private=True)

    response = await _token(identity, client_assertion(stranger, client_id, TOKEN_ENDPOINT))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_an_unsigned_assertion_is_refused(identity: Identity) -> None:
    client_id, key = await _key_client(identity)
    signed = client_assertion(key, client_id, TOKEN_ENDPOINT)
    unsigned = "eyJhbGciOiJub25lIn0." + signed.split(".")[1] + "."

    response = await _token(identity, unsigned)

    assert response.status_code == 401


async def test_a_secret_client_cannot_use_an_assertion(identity: Identity) -> None:
    _, client_id, _ = await identity.add_client("actes:read")
    key = ECKey.generate_key("P-256", private=True)

    response = await _token(identity, client_assertion(key, client_id, TOKEN_ENDPOINT))

    assert response.status_code == 401


async def test_a_key_client_cannot_use_a_secret(identity: Identity) -> None:
    client_id, _ = await _key_client(identity)

    response = await identity.token_response(client_id, "any secret at all")

    assert response.status_code == 401


async def test_two_methods_at_once_are_refused(identity: Identity) -> None:
    client_id, key = await _key_client(identity)

    response = await _token(
        identity,
        client_assertion(key, client_id, TOKEN_ENDPOINT),
        client_id=client_id,
        client_secret="also this",
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
