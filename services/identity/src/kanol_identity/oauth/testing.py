"""Helpers for tests and benchmarks of the authorisation server: agents, clients with a
redirect_uri or a key, PKCE pairs, client assertions, and the login pages driven by httpx.

Rows are written straight into identity's database (its own models), so these helpers do
not depend on the admin API's shape.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlmodel import select

from kanol_common.db import Database
from kanol_identity import credentials
from kanol_identity.models import (
    Agent,
    ApiClient,
    ClientAuthMethod,
    Organisation,
    Subscription,
    utcnow,
)
from kanol_identity.testing import BASE_URL, Identity, basic

REDIRECT_URI = "http://app.test/callback"
AGENT_PASSWORD = "un mot de passe assez long"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class AgentLogin:
    id: str
    login: str
    password: str
    siren: str
    totp_secret: str | None


def pkce_pair() -> tuple[str, str]:
    """A code_verifier and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def subscribe(database: Database, siren: str, services: Iterable[str]) -> None:
    async with database.session() as session:
        for service in services:
            if await session.get(Subscription, (siren, service)) is None:
                session.add(Subscription(siren=siren, service=service, subscribed_at=utcnow()))
        await session.commit()


async def set_redirect_uris(database: Database, client_id: str, uris: list[str]) -> None:
    async with database.session() as session:
        client = (
            await session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
        ).one()
        client.redirect_uris = uris
        session.add(client)
        await session.commit()


async def add_agent(
    database: Database,
    siren: str,
    *,
    roles: Iterable[str] = ("actes:submitter",),
    totp: bool = False,
    password: str = AGENT_PASSWORD,
    name: str = "Agnès Le Gall",
) -> AgentLogin:
    login = f"agent-{uuid.uuid4().hex[:10]}@mairie.test"
    secret = credentials.new_totp_secret() if totp else None
    async with database.session() as session:
        organisation = (
            await session.exec(select(Organisation).where(Organisation.siren == siren))
        ).one()
        assert organisation.id is not None
        now = utcnow()
        agent = Agent(
            organisation_id=organisation.id,
            siren=siren,
            login=login,
            display_name=name,
            password_hash=await credentials.hash_password(password),
            totp_secret=secret,
            totp_confirmed=totp,
            roles=list(roles),
            created_at=now,
            updated_at=now,
        )
        session.add(agent)
        await session.commit()
        return AgentLogin(agent.id, login, password, siren, secret)


async def set_agent_active(database: Database, agent_id: str, active: bool) -> None:
    async with database.session() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        agent.active = active
        if not active:  # as the service does: the last deactivation is kept
            agent.deactivated_at = utcnow()
        session.add(agent)
        await session.commit()


async def add_key_client(
    database: Database, siren: str, scopes: Iterable[str]
) -> tuple[str, ECKey]:
    """A private_key_jwt client: its id and its private key (the public half registered)."""
    key = ECKey.generate_key("P-256", {"use": "sig"}, private=True)
    client_id = f"key-client-{uuid.uuid4().hex[:10]}"
    public = {**key.as_dict(private=False), "kid": key.thumbprint()}
    async with database.session() as session:
        session.add(
            ApiClient(
                client_id=client_id,
                siren=siren,
                name="Logiciel à clé",
                auth_method=ClientAuthMethod.PRIVATE_KEY_JWT.value,
                jwks={"keys": [public]},
                scopes=sorted(set(scopes)),
                created_at=utcnow(),
            )
        )
        await session.commit()
    return client_id, key


def client_assertion(
    key: ECKey,
    client_id: str,
    audience: str,
    *,
    jti: str | None = None,
    lifetime: int = 60,
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
        **overrides,
    }
    return jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, claims, key)


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: for assertions on what was issued."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match is not None, page
    return match.group(1)


def hidden_fields(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in found}


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def authorize_params(client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email actes:write actes:read",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": secrets.token_urlsafe(8),
        **extra,
    }


async def sign_in(
    http: httpx.AsyncClient,
    params: dict[str, str],
    agent: AgentLogin,
    *,
    decision: str = "allow",
) -> httpx.Response:
    """Go through the login (and TOTP) pages and the consent, unless the agent allowed the
    application before; the final redirect's response."""
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = {**hidden_fields(page.text), "login": agent.login, "password": agent.password}
    response = await http.post("/oauth/authorize/login", data=form)
    assert response.status_code == 303, response.text

    page = await http.get(response.headers["location"])
    if agent.totp_secret is not None:
        code = credentials.totp_code(agent.totp_secret)
        response = await http.post(
            "/oauth/authorize/totp", data={**hidden_fields(page.text), "code": code}
        )
        assert response.status_code == 303, response.text
        page = await http.get(response.headers["location"])
    if page.status_code == 303 and decision == "allow":
        return page  # allowed at an earlier login: straight back to the application
    assert "Autoriser" in page.text, page.text
    return await http.post(
        "/oauth/authorize/consent", data={**hidden_fields(page.text), "decision": decision}
    )


async def revoke_client(database: Database, client_id: str) -> None:
    async with database.session() as session:
        client = (
            await session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
        ).one()
        client.revoked_at = utcnow()
        session.add(client)
        await session.commit()


WEB_SCOPES = "actes:write actes:read archive:read org:admin"


class WebApp:
    """A registered web application of an organisation (subscribed to actes), its agents."""

    def __init__(self, identity: Identity, siren: str, client_id: str, secret: str) -> None:
        self.identity = identity
        self.database: Database = identity.app.state.runtime.database
        self.siren = siren
        self.client_id = client_id
        self.secret = secret

    @classmethod
    async def create(cls, identity: Identity, scopes: str = WEB_SCOPES) -> WebApp:
        siren, client_id, secret = await identity.add_client(scopes)
        database = identity.app.state.runtime.database
        await set_redirect_uris(database, client_id, [REDIRECT_URI])
        await subscribe(database, siren, ["actes"])
        return cls(identity, siren, client_id, secret)

    async def agent(self, **options: Any) -> AgentLogin:
        return await add_agent(self.database, self.siren, **options)

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.identity.app), base_url=BASE_URL
        )

    async def code(self, agent: AgentLogin, **extra: str) -> tuple[str, str, dict[str, str]]:
        """A fresh code for the agent: the code, its verifier, the request's parameters."""
        verifier, challenge = pkce_pair()
        params = authorize_params(self.client_id, challenge, **extra)
        async with self.browser() as browser:
            response = await sign_in(browser, params, agent)
        assert response.status_code == 303, response.text
        answer = query_of(response.headers["location"])
        assert answer["state"] == params["state"]
        assert answer["iss"] == BASE_URL
        return answer["code"], verifier, params

    async def exchange(self, code: str, verifier: str | None, **form: str) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        if verifier is not None:
            data["code_verifier"] = verifier
        return await self.post("/oauth/token", {**data, **form})

    async def tokens(self, agent: AgentLogin) -> dict[str, Any]:
        code, verifier, _ = await self.code(agent)
        response = await self.exchange(code, verifier)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, refresh_token: str, **form: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **form}
        return await self.post("/oauth/token", data)

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return await self.identity.http.post(
            path, data=data, headers=basic(self.client_id, self.secret)
        )
