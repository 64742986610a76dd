"""Revocations through the real processes: identity revokes an API client, or one access
token (RFC 7009), and within seconds actes-pes and archive refuse the token, which has not
expired; the organisation's other software, and the client's other tokens, go on."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.launcher import Platform

pytestmark = pytest.mark.e2e

REFUSED_WITHIN_SECONDS = 30.0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _status(url: str, token: str) -> httpx.Response:
    return httpx.get(url, headers=_bearer(token), timeout=10)


def test_a_revoked_clients_token_is_refused_before_it_expires(platform: Platform) -> None:
    platform.wait_organisation_known()
    admin = _bearer(platform.token("org:admin"))
    clients = f"{platform.identity_url}/v1/organisations/{platform.siren}/api-clients"
    created = httpx.post(
        clients,
        json={"name": "Logiciel de la cantine", "scopes": ["actes:read", "archive:read"]},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    client_id, secret = created.json()["client_id"], created.json()["client_secret"]
    issued = httpx.post(
        f"{platform.identity_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    actes, archives = f"{platform.actes_url}/v1/actes", f"{platform.archive_url}/v1/archives"
    assert _status(actes, token).status_code == 200
    assert _status(archives, token).status_code == 200

    revoked = httpx.post(f"{clients}/{client_id}/revoke", headers=admin, timeout=10)
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()

    deadline = revoked_at + REFUSED_WITHIN_SECONDS
    while _status(actes, token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = _status(actes, token)
    assert refused.status_code == 401, f"still accepted {REFUSED_WITHIN_SECONDS} s later"
    assert f"{client_id} was revoked" in refused.json()["detail"]
    while _status(archives, token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status(archives, token).status_code == 401
    print(f"refused {time.monotonic() - revoked_at:.1f} s after the revocation")
    assert _status(actes, platform.token()).status_code == 200
    assert issued.json()["expires_in"] > REFUSED_WITHIN_SECONDS


def test_one_revoked_token_is_refused_and_its_siblings_are_not(platform: Platform) -> None:
    platform.wait_organisation_known()
    revoked_token, sibling = platform.token(), platform.token()
    actes = f"{platform.actes_url}/v1/actes"
    assert _status(actes, revoked_token).status_code == 200

    revoked = httpx.post(
        f"{platform.identity_url}/oauth/revoke",
        data={"token": revoked_token, "token_type_hint": "access_token"},
        auth=(platform.client_id, platform.client_secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    deadline = time.monotonic() + REFUSED_WITHIN_SECONDS
    while _status(actes, revoked_token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)

    refused = _status(actes, revoked_token)
    assert refused.status_code == 401, f"still accepted {REFUSED_WITHIN_SECONDS} s later"
    assert "access token was revoked" in refused.json()["detail"]
    assert _status(actes, sibling).status_code == 200
