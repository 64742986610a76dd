"""Signing out (RP-Initiated Logout): with the application's ID token the session ends at
once and the agent goes back to a registered address; without it the agent confirms; a
forged confirmation or an unregistered address changes nothing."""

from __future__ import annotations

import httpx
import pytest

from kanol_identity.oauth.testing import (
    REDIRECT_URI,
    WebApp,
    authorize_params,
    hidden_fields,
    pkce_pair,
    query_of,
    sign_in,
)
from kanol_identity.testing import Identity


@pytest.fixture
async def web(identity: Identity) -> WebApp:
    return await WebApp.create(identity)


async def _signed_in(web: WebApp, browser: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """Sign an agent in within ``browser``: the authorisation request and the ID token."""
    agent = await web.agent()
    verifier, challenge = pkce_pair()
    params = authorize_params(web.client_id, challenge)
    answer = await sign_in(browser, params, agent)
    code = query_of(answer.headers["location"])["code"]
    issued = await web.exchange(code, verifier)
    assert issued.status_code == 200, issued.text
    return params, str(issued.json()["id_token"])


async def _still_signed_in(browser: httpx.AsyncClient, params: dict[str, str]) -> bool:
    """Whether authorising again goes straight back to the application (signed in, and
    allowed before), rather than to the login page."""
    page = await browser.get("/oauth/authorize", params=params)
    if page.status_code == 303:
        return "code=" in page.headers["location"]
    assert page.status_code == 200, page.text
    return 'name="password"' not in page.text


async def test_the_applications_id_token_signs_out_at_once(web: WebApp) -> None:
    async with web.browser() as browser:
        params, id_token = await _signed_in(web, browser)
        assert await _still_signed_in(browser, params)

        response = await browser.get(
            "/oauth/logout",
            params={
                "id_token_hint": id_token,
                "post_logout_redirect_uri": REDIRECT_URI,
                "state": "apres-deconnexion",
            },
        )

        assert response.status_code == 303
        assert response.headers["location"].startswith(REDIRECT_URI)
        assert query_of(response.headers["location"]) == {"state": "apres-deconnexion"}
        assert "kanol_session=" in response.headers["set-cookie"]
        assert not await _still_signed_in(browser, params)


async def test_without_a_hint_the_agent_confirms(web: WebApp) -> None:
    async with web.browser() as browser:
        params, _ = await _signed_in(web, browser)

        page = await browser.get("/oauth/logout")
        assert page.status_code == 200
        assert "Se déconnecter" in page.text
        assert await _still_signed_in(browser, params)
        done = await browser.post("/oauth/logout", data=hidden_fields(page.text))

        assert done.status_code == 200
        assert "Vous êtes déconnecté" in done.text
        assert not await _still_signed_in(browser, params)


async def test_a_confirmation_without_the_sessions_token_is_refused(web: WebApp) -> None:
    async with web.browser() as browser:
        params, _ = await _signed_in(web, browser)

        forged = await browser.post("/oauth/logout", data={"csrf_token": "forged"})

        assert forged.status_code == 403
        assert await _still_signed_in(browser, params)


async def test_an_unregistered_return_address_is_never_followed(web: WebApp) -> None:
    async with web.browser() as browser:
        params, id_token = await _signed_in(web, browser)

        response = await browser.get(
            "/oauth/logout",
            params={
                "id_token_hint": id_token,
                "post_logout_redirect_uri": "https://ailleurs.example/merci",
            },
        )

        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Adresse de retour inconnue" in response.text
        assert await _still_signed_in(browser, params)


async def test_discovery_names_the_logout_endpoint(identity: Identity) -> None:
    metadata = (await identity.http.get("/.well-known/openid-configuration")).json()

    assert metadata["end_session_endpoint"] == f"{metadata['issuer']}/oauth/logout"
