"""The authorisation code flow with PKCE, driven over HTTP: codes, tokens, ID token, userinfo,
and every way a code exchange must be refused."""

from __future__ import annotations

import httpx
import pytest

from kanol_common.auth import InvalidToken, StaticJwksVerifier
from kanol_common.events.identity import AccessTokenRevoked
from kanol_identity.oauth.testing import (
    REDIRECT_URI,
    AgentLogin,
    WebApp,
    authorize_params,
    claims_of,
    hidden_fields,
    pkce_pair,
    query_of,
    revoke_client,
    sign_in,
)
from kanol_identity.testing import BASE_URL, Identity, basic

from .directory import outbox_events


@pytest.fixture
async def web(identity: Identity) -> WebApp:
    return await WebApp.create(identity)


class TestExchange:
    async def test_gives_access_refresh_and_id_tokens(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent(roles=["actes:submitter"])
        code, verifier, params = await web.code(agent)

        response = await web.exchange(code, verifier)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["refresh_token"]
        # The agent's role gives actes only; the client may not have more than it asked.
        assert body["scope"] == "actes:read actes:write email openid profile"
        access = claims_of(body["access_token"])
        assert access["sub"] == agent.id
        assert access["client_id"] == web.client_id
        assert access["siren"] == web.siren
        jwks = (await identity.http.get("/.well-known/jwks.json")).json()
        verifier_ = StaticJwksVerifier(
            jwks, issuer=BASE_URL, audience=identity.settings.token_audience
        )
        caller = await verifier_.verify(body["access_token"])
        assert caller.scopes >= {"actes:read", "actes:write"}
        id_token = claims_of(body["id_token"])
        assert id_token["aud"] == web.client_id
        assert id_token["sub"] == agent.id
        assert id_token["nonce"] == params["nonce"]
        assert id_token["email"] == agent.login
        assert id_token["siren"] == web.siren
        assert id_token["roles"] == ["actes:submitter"]

    async def test_an_id_token_is_no_access_token(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent()
        code, verifier, _ = await web.code(agent)
        id_token = (await web.exchange(code, verifier)).json()["id_token"]
        jwks = (await identity.http.get("/.well-known/jwks.json")).json()
        verifier_ = StaticJwksVerifier(
            jwks, issuer=BASE_URL, audience=identity.settings.token_audience
        )

        with pytest.raises(InvalidToken, match=r"audience|lacks required claims"):
            await verifier_.verify(id_token)
        userinfo = await identity.http.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {id_token}"}
        )
        assert userinfo.status_code == 401

    async def test_userinfo_gives_the_agents_claims(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent(roles=["actes:reader", "org:admin"])
        code, verifier, _ = await web.code(agent)
        access = (await web.exchange(code, verifier)).json()["access_token"]

        response = await identity.http.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {access}"}
        )

        assert response.status_code == 200, response.text
        assert response.json() == {
            "sub": agent.id,
            "name": "Agnès Le Gall",
            "email": agent.login,
            "email_verified": False,
            "siren": web.siren,
            "roles": ["actes:reader", "org:admin"],
        }

    async def test_a_wrong_verifier_is_refused(self, web: WebApp) -> None:
        agent = await web.agent()
        code, _, _ = await web.code(agent)
        other_verifier, _ = pkce_pair()

        response = await web.exchange(code, other_verifier)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_no_verifier_is_refused(self, web: WebApp) -> None:
        agent = await web.agent()
        code, _, _ = await web.code(agent)

        response = await web.exchange(code, None)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_a_redirect_uri_mismatch_is_refused(self, web: WebApp) -> None:
        agent = await web.agent()
        code, verifier, _ = await web.code(agent)

        response = await web.exchange(code, verifier, redirect_uri="http://app.test/other")

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_a_code_reused_is_refused_and_revokes_what_it_gave(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        code, verifier, _ = await web.code(agent)
        first = (await web.exchange(code, verifier)).json()

        again = await web.exchange(code, verifier)

        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        refreshed = await identity.http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
            headers=basic(web.client_id, web.secret),
        )
        assert refreshed.status_code == 400
        assert refreshed.json()["error"] == "invalid_grant"
        # The access token the first exchange gave is revoked too, and the services told.
        introspected = await web.post("/oauth/introspect", {"token": first["access_token"]})
        assert introspected.json() == {"active": False}
        jti = claims_of(first["access_token"])["jti"]
        revoked = await outbox_events(identity, AccessTokenRevoked, web.client_id)
        assert [event.jti for event in revoked] == [jti]

    async def test_another_clients_code_is_refused(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent()
        code, verifier, _ = await web.code(agent)
        other = await WebApp.create(identity)

        response = await other.exchange(code, verifier)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_a_revoked_client_gets_no_token(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent()
        code, verifier, _ = await web.code(agent)
        await revoke_client(web.database, web.client_id)

        response = await web.exchange(code, verifier)

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


class TestAuthorizationRequest:
    async def test_plain_pkce_is_refused_at_the_redirect_uri(self, web: WebApp) -> None:
        verifier, _ = pkce_pair()
        params = authorize_params(web.client_id, verifier[:43], code_challenge_method="plain")
        async with web.browser() as browser:
            response = await browser.get("/oauth/authorize", params=params)

        assert response.status_code == 303
        assert response.headers["location"].startswith(REDIRECT_URI)
        answer = query_of(response.headers["location"])
        assert answer["error"] == "invalid_request"
        assert answer["state"] == params["state"]

    async def test_no_pkce_is_refused(self, web: WebApp) -> None:
        params = authorize_params(web.client_id, "")
        del params["code_challenge"], params["code_challenge_method"]
        async with web.browser() as browser:
            response = await browser.get("/oauth/authorize", params=params)

        assert response.status_code == 303
        assert query_of(response.headers["location"])["error"] == "invalid_request"

    async def test_a_scope_beyond_the_clients_is_invalid_scope(self, web: WebApp) -> None:
        _, challenge = pkce_pair()
        params = authorize_params(web.client_id, challenge, scope="openid pes:write")
        async with web.browser() as browser:
            response = await browser.get("/oauth/authorize", params=params)

        assert query_of(response.headers["location"])["error"] == "invalid_scope"

    async def test_a_refused_consent_is_access_denied(self, web: WebApp) -> None:
        agent = await web.agent()
        _, challenge = pkce_pair()
        params = authorize_params(web.client_id, challenge)
        async with web.browser() as browser:
            response = await sign_in(browser, params, agent, decision="deny")

        answer = query_of(response.headers["location"])
        assert answer["error"] == "access_denied"
        assert answer["state"] == params["state"]
        assert "code" not in answer

    async def test_a_second_factor_is_asked_when_enrolled(self, web: WebApp) -> None:
        agent = await web.agent(totp=True)

        code, verifier, _ = await web.code(agent)

        assert (await web.exchange(code, verifier)).status_code == 200


class TestRememberedConsent:
    """What an agent allowed an application is not asked again at its next login."""

    @staticmethod
    async def _after_login(web: WebApp, agent: AgentLogin, **extra: str) -> httpx.Response:
        """A fresh browser signs in: the answer of the authorisation that follows."""
        _, challenge = pkce_pair()
        params = authorize_params(web.client_id, challenge, **extra)
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=params)
            form = {**hidden_fields(page.text), "login": agent.login, "password": agent.password}
            moved = await browser.post("/oauth/authorize/login", data=form)
            return await browser.get(moved.headers["location"])

    async def test_the_next_login_goes_straight_back_with_a_code(self, web: WebApp) -> None:
        agent = await web.agent()
        await web.code(agent)  # the first login shows the consent page, and the agent allows

        answer = await self._after_login(web, agent)

        assert answer.status_code == 303
        assert answer.headers["location"].startswith(REDIRECT_URI)
        code = query_of(answer.headers["location"])["code"]
        assert (await web.exchange(code, None)).status_code == 400  # PKCE still required

    async def test_prompt_consent_and_new_scopes_ask_again(self, web: WebApp) -> None:
        agent = await web.agent()
        await web.code(agent, scope="openid actes:read")

        prompted = await self._after_login(web, agent, scope="openid actes:read", prompt="consent")
        wider = await self._after_login(web, agent, scope="openid actes:read actes:write")

        assert prompted.status_code == 200 and "Autoriser" in prompted.text
        assert wider.status_code == 200 and "actes:write" in wider.text

    async def test_a_refusal_forgets_what_was_allowed(self, web: WebApp) -> None:
        agent = await web.agent()
        await web.code(agent)
        _, challenge = pkce_pair()
        async with web.browser() as browser:
            params = authorize_params(web.client_id, challenge, prompt="consent")
            refused = await sign_in(browser, params, agent, decision="deny")
        assert query_of(refused.headers["location"])["error"] == "access_denied"

        answer = await self._after_login(web, agent)

        assert answer.status_code == 200 and "Autoriser" in answer.text
