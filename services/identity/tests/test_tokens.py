"""Refresh tokens (rotation, reuse detection), revocation (RFC 7009), introspection
(RFC 7662), userinfo, and agents deactivated while they hold tokens."""

from __future__ import annotations

import time

import pytest

from kanol_common.events.identity import AccessTokenRevoked, AgentReactivated
from kanol_common.testing.auth import TokenFactory
from kanol_identity.oauth.testing import (
    WebApp,
    authorize_params,
    claims_of,
    pkce_pair,
    revoke_client,
    set_agent_active,
    sign_in,
)
from kanol_identity.testing import BASE_URL, Identity

from .directory import outbox_events


@pytest.fixture
async def web(identity: Identity) -> WebApp:
    return await WebApp.create(identity)


class TestRefresh:
    async def test_rotates_the_refresh_token(self, web: WebApp) -> None:
        agent = await web.agent()
        first = await web.tokens(agent)

        response = await web.refresh(first["refresh_token"])

        assert response.status_code == 200, response.text
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert claims_of(second["access_token"])["sub"] == agent.id
        assert (await web.refresh(second["refresh_token"])).status_code == 200

    async def test_a_reused_refresh_token_revokes_its_family(self, web: WebApp) -> None:
        agent = await web.agent()
        first = await web.tokens(agent)
        second = (await web.refresh(first["refresh_token"])).json()

        reused = await web.refresh(first["refresh_token"])

        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        # The legitimate holder's newer token dies with it: the family is revoked.
        after = await web.refresh(second["refresh_token"])
        assert after.status_code == 400
        assert after.json()["error"] == "invalid_grant"
        # And so do the access tokens the family gave.
        for issued in (first, second):
            introspected = await web.post("/oauth/introspect", {"token": issued["access_token"]})
            assert introspected.json() == {"active": False}

    async def test_the_family_revoked_leaves_other_logins_alone(self, web: WebApp) -> None:
        agent = await web.agent()
        stolen = await web.tokens(agent)
        other_login = await web.tokens(agent)
        await web.refresh(stolen["refresh_token"])
        await web.refresh(stolen["refresh_token"])

        assert (await web.refresh(other_login["refresh_token"])).status_code == 200

    async def test_narrows_scopes_but_never_widens(self, web: WebApp) -> None:
        agent = await web.agent()
        first = await web.tokens(agent)

        narrowed = await web.refresh(first["refresh_token"], scope="openid actes:read")
        wider = await web.refresh(narrowed.json()["refresh_token"], scope="openid actes:write")

        assert narrowed.json()["scope"] == "actes:read openid"
        assert wider.status_code == 400
        assert wider.json()["error"] == "invalid_scope"

    async def test_another_client_cannot_use_it(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent()
        first = await web.tokens(agent)
        other = await WebApp.create(identity)

        response = await other.refresh(first["refresh_token"])

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"


class TestDeactivation:
    async def test_a_deactivated_agent_can_neither_refresh_nor_read_userinfo(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)

        await set_agent_active(web.database, agent.id, False)

        refreshed = await web.refresh(issued["refresh_token"])
        assert refreshed.status_code == 400
        assert refreshed.json()["error"] == "invalid_grant"
        userinfo = await identity.http.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {issued['access_token']}"}
        )
        assert userinfo.status_code == 401
        assert 'error="invalid_token"' in userinfo.headers["www-authenticate"]
        introspected = await web.post("/oauth/introspect", {"token": issued["access_token"]})
        assert introspected.json() == {"active": False}
        # Reactivated, the agent must log in again: its old family stays revoked.
        await set_agent_active(web.database, agent.id, True)
        assert (await web.refresh(issued["refresh_token"])).status_code == 400

    async def test_reactivation_revives_nothing_issued_before_the_deactivation(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)
        url = f"/v1/organisations/{agent.siren}/agents/{agent.id}"
        admin = await identity.admin_headers()
        _, challenge = pkce_pair()
        params = authorize_params(web.client_id, challenge)

        async with web.browser() as browser:
            await sign_in(browser, params, agent)
            deactivated = await identity.http.post(f"{url}/deactivate", headers=admin)
            reactivated = await identity.http.post(f"{url}/reactivate", headers=admin)
            again = await identity.http.post(f"{url}/reactivate", headers=admin)
            page = await browser.get("/oauth/authorize", params=params)

        assert deactivated.status_code == reactivated.status_code == again.status_code == 200
        assert reactivated.json()["active"] is True
        assert reactivated.json()["deactivated_at"] == deactivated.json()["deactivated_at"]
        assert 'id="password"' in page.text  # the browser session stays ended
        assert (await web.refresh(issued["refresh_token"])).status_code == 400
        introspected = await web.post("/oauth/introspect", {"token": issued["access_token"]})
        assert introspected.json() == {"active": False}
        fresh = await web.tokens(agent)  # a new login works
        assert claims_of(fresh["access_token"])["sub"] == agent.id
        assert (await web.refresh(fresh["refresh_token"])).status_code == 200
        [event] = await outbox_events(identity, AgentReactivated, agent.id)
        assert event.siren == agent.siren

    async def test_deactivation_ends_a_browser_session(self, web: WebApp) -> None:
        agent = await web.agent()
        _, challenge = pkce_pair()
        params = authorize_params(web.client_id, challenge)
        async with web.browser() as browser:
            await sign_in(browser, params, agent)
            # Signed in and allowed before: straight back to the application with a code.
            again = await browser.get("/oauth/authorize", params=params)
            assert again.status_code == 303 and "code=" in again.headers["location"]

            await set_agent_active(web.database, agent.id, False)
            page = await browser.get("/oauth/authorize", params=params)

        assert "Autoriser" not in page.text
        assert 'id="password"' in page.text
        assert "session a pris fin" in page.text


class TestRevocation:
    async def test_a_revoked_refresh_token_no_longer_refreshes(self, web: WebApp) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)

        response = await web.post(
            "/oauth/revoke",
            {"token": issued["refresh_token"], "token_type_hint": "refresh_token"},
        )

        assert response.status_code == 200
        assert (await web.refresh(issued["refresh_token"])).status_code == 400

    async def test_a_revoked_access_token_is_inactive(self, web: WebApp) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)

        response = await web.post("/oauth/revoke", {"token": issued["access_token"]})

        assert response.status_code == 200
        introspected = await web.post("/oauth/introspect", {"token": issued["access_token"]})
        assert introspected.json() == {"active": False}
        # The services verify offline: they hear of it (kanol_common.revocations).
        claims = claims_of(issued["access_token"])
        [event] = await outbox_events(web.identity, AccessTokenRevoked, web.client_id)
        assert (event.jti, event.client_id, event.siren) == (
            claims["jti"],
            web.client_id,
            web.siren,
        )
        assert int(event.expires_at.timestamp()) == claims["exp"]

    async def test_an_unknown_token_is_answered_200(self, web: WebApp) -> None:
        response = await web.post("/oauth/revoke", {"token": "nothing-of-ours"})

        assert response.status_code == 200

    async def test_another_clients_token_is_left_alone(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)
        other = await WebApp.create(identity)

        await other.post("/oauth/revoke", {"token": issued["refresh_token"]})

        assert (await web.refresh(issued["refresh_token"])).status_code == 200

    async def test_revocation_needs_client_authentication(self, identity: Identity) -> None:
        response = await identity.http.post("/oauth/revoke", data={"token": "x"})

        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


class TestIntrospection:
    async def test_an_agents_access_token_is_active(self, identity: Identity, web: WebApp) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)
        # A service of the platform (documents:read, granted by an operator).
        resource = await WebApp.create(identity, scopes="documents:read")

        response = await resource.post("/oauth/introspect", {"token": issued["access_token"]})

        body = response.json()
        assert response.status_code == 200
        assert body["active"] is True
        assert body["sub"] == agent.id
        assert body["client_id"] == web.client_id
        assert body["siren"] == web.siren
        assert "actes:write" in body["scope"].split()

    async def test_another_organisations_client_learns_nothing(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)
        foreign = await WebApp.create(identity)

        response = await foreign.post("/oauth/introspect", {"token": issued["access_token"]})
        own = await web.post("/oauth/introspect", {"token": issued["access_token"]})

        assert response.status_code == 200
        assert response.json() == {"active": False}
        assert own.json()["active"] is True

    async def test_a_refresh_token_is_active_for_its_own_client_only(
        self, identity: Identity, web: WebApp
    ) -> None:
        agent = await web.agent()
        issued = await web.tokens(agent)
        other = await WebApp.create(identity)

        own = await web.post("/oauth/introspect", {"token": issued["refresh_token"]})
        foreign = await other.post("/oauth/introspect", {"token": issued["refresh_token"]})

        assert own.json()["active"] is True
        assert own.json()["token_type"] == "refresh_token"
        assert foreign.json() == {"active": False}

    async def test_a_revoked_clients_token_is_inactive_and_it_gets_no_more(
        self, identity: Identity, web: WebApp
    ) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        token = await identity.token(client_id, secret)

        await revoke_client(web.database, client_id)

        introspected = await web.post("/oauth/introspect", {"token": token})
        assert introspected.json() == {"active": False}
        refused = await identity.token_response(client_id, secret)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"expires_in": -120},
            {"iss": "https://evil.example"},
            {"aud": "another-platform"},
        ],
    )
    async def test_forged_expired_or_foreign_tokens_are_inactive(
        self, web: WebApp, overrides: dict[str, object]
    ) -> None:
        # Signed by a key that is not in identity's JWKS, or with the wrong claims.
        forger = TokenFactory(issuer=BASE_URL)
        token = forger.issue(web.siren, "actes:read", **overrides)

        response = await web.post("/oauth/introspect", {"token": token})

        assert response.json() == {"active": False}

    async def test_alg_none_is_inactive(self, identity: Identity, web: WebApp) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        genuine = await identity.token(client_id, secret)
        header = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0"  # {"alg":"none","typ":"at+jwt"}
        unsigned = f"{header}.{genuine.split('.')[1]}."

        response = await web.post("/oauth/introspect", {"token": unsigned})

        assert response.json() == {"active": False}

    async def test_an_expired_token_of_ours_is_inactive(
        self, identity: Identity, web: WebApp
    ) -> None:
        from kanol_identity import tokens

        async with web.database.session() as session:
            issued = await tokens.issue_access_token(
                session,
                identity.app.state.signing_keys,
                identity.settings.model_copy(update={"access_token_lifetime_seconds": -60}),
                client_id=web.client_id,
                subject=web.client_id,
                siren=web.siren,
                scopes=["actes:read"],
            )
        assert claims_of(issued.access_token)["exp"] < time.time()

        response = await web.post("/oauth/introspect", {"token": issued.access_token})

        assert response.json() == {"active": False}
