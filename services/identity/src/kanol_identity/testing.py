"""Run identity in-process for tests: its app on an httpx client, and a few helpers.

Used by identity's own tests, and by any test that wants real tokens from a real identity
(``identity.http_client_factory()`` plugs into a JwksVerifier or a ServiceTokenProvider).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from kanol_common.siren import luhn_is_valid
from kanol_identity.models import OrganisationKind, scope_service
from kanol_identity.seed import SeedRequest, seed
from kanol_identity.settings import IdentitySettings

BASE_URL = "http://identity.test"
SYNDICAT_SIREN = "253514491"
ADMIN_CLIENT = "syndicat-admin"
ADMIN_SECRET = "admin-secret-for-tests"


def new_siren() -> str:
    """A random SIREN whose last digit makes the Luhn checksum hold."""
    body = f"{secrets.randbelow(10**8):08d}"
    return next(body + digit for digit in "0123456789" if luhn_is_valid(body + digit))


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@dataclass
class Identity:
    app: FastAPI
    settings: IdentitySettings
    http: httpx.AsyncClient

    def http_client_factory(self) -> Callable[[], httpx.AsyncClient]:
        """For a JwksVerifier or a ServiceTokenProvider: clients that reach this app."""
        return lambda: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL
        )

    async def token_response(self, client_id: str, secret: str, **form: str) -> httpx.Response:
        return await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", **form},
            headers=basic(client_id, secret),
        )

    async def token(self, client_id: str, secret: str, **form: str) -> str:
        response = await self.token_response(client_id, secret, **form)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(ADMIN_CLIENT, ADMIN_SECRET)}"}

    async def add_client(self, scopes: str, **org: Any) -> tuple[str, str, str]:
        """A new organisation with one client: its SIREN, client id and secret."""
        siren = new_siren()
        client_id = f"client-{uuid.uuid4().hex[:10]}"
        secret = f"secret-{uuid.uuid4().hex}"
        request = SeedRequest(
            siren=siren,
            name=org.get("name", f"Commune {siren}"),
            kind=OrganisationKind.COMMUNE,
            departement=org.get("departement", "035"),
            client_id=client_id,
            client_secret=secret,
            scopes=tuple(scopes.split()),
            # Subscribed to the services its scopes name, so they may be granted.
            services=tuple(
                {service for scope in scopes.split() if (service := scope_service(scope))}
            ),
        )
        await seed(self.app.state.runtime.database, request)
        return siren, client_id, secret
