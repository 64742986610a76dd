"""The login, second factor and consent pages, as HTML: what they show, what they refuse."""

from __future__ import annotations

import pytest

from kanol_identity import credentials
from kanol_identity.oauth.testing import (
    REDIRECT_URI,
    WebApp,
    authorize_params,
    hidden_fields,
    pkce_pair,
    set_agent_active,
)
from kanol_identity.testing import Identity


@pytest.fixture
async def web(identity: Identity) -> WebApp:
    return await WebApp.create(identity)


def _params(web: WebApp, **extra: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {**authorize_params(web.client_id, challenge), **extra}


class TestRequestErrors:
    async def test_an_unknown_client_is_an_error_page(self, web: WebApp) -> None:
        async with web.browser() as browser:
            page = await browser.get(
                "/oauth/authorize", params=_params(web, client_id="nobody-such")
            )

        assert page.status_code == 400
        assert "location" not in page.headers
        assert "Application inconnue" in page.text

    async def test_an_unregistered_redirect_uri_is_an_error_page_never_a_redirect(
        self, web: WebApp
    ) -> None:
        async with web.browser() as browser:
            page = await browser.get(
                "/oauth/authorize",
                params=_params(web, redirect_uri="https://evil.example/callback"),
            )

        assert page.status_code == 400
        assert "location" not in page.headers
        assert "Adresse de retour refusée" in page.text
        assert "evil.example" not in page.text

    async def test_a_prefix_of_a_registered_redirect_uri_is_not_enough(self, web: WebApp) -> None:
        async with web.browser() as browser:
            page = await browser.get(
                "/oauth/authorize", params=_params(web, redirect_uri=REDIRECT_URI + "/../x")
            )

        assert page.status_code == 400


class TestLoginPage:
    async def test_is_plain_accessible_html(self, web: WebApp) -> None:
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="fr">' in page.text
        assert '<label for="login">' in page.text
        assert '<label for="password">' in page.text
        assert "<script" not in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "path=/oauth" in cookie

    async def test_a_wrong_password_is_shown_on_its_field(self, web: WebApp) -> None:
        agent = await web.agent()
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            form = {**hidden_fields(page.text), "login": agent.login, "password": "pas le bon"}
            answer = await browser.post("/oauth/authorize/login", data=form)

        assert answer.status_code == 400
        assert 'role="alert"' in answer.text
        assert 'id="password-error"' in answer.text
        assert 'aria-describedby="password-error"' in answer.text
        assert "Identifiant ou mot de passe incorrect." in answer.text
        assert f'value="{agent.login}"' in answer.text  # the login is kept, not the password

    async def test_an_unknown_login_reads_like_a_wrong_password(self, web: WebApp) -> None:
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            form = {
                **hidden_fields(page.text),
                "login": "personne@mairie.test",
                "password": "un mot de passe",
            }
            answer = await browser.post("/oauth/authorize/login", data=form)

        assert answer.status_code == 400
        assert "Identifiant ou mot de passe incorrect." in answer.text

    async def test_empty_fields_are_named(self, web: WebApp) -> None:
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            answer = await browser.post(
                "/oauth/authorize/login",
                data={**hidden_fields(page.text), "login": "", "password": ""},
            )

        assert "Saisissez votre identifiant." in answer.text
        assert "Saisissez votre mot de passe." in answer.text
        assert 'aria-describedby="login-error"' in answer.text

    async def test_a_form_without_the_sessions_csrf_token_is_refused(self, web: WebApp) -> None:
        agent = await web.agent()
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            fields = {**hidden_fields(page.text), "csrf_token": "forged"}
            answer = await browser.post(
                "/oauth/authorize/login",
                data={**fields, "login": agent.login, "password": agent.password},
            )

        assert answer.status_code == 403
        assert "Session expirée" in answer.text

    async def test_a_form_from_another_browser_is_refused(self, web: WebApp) -> None:
        agent = await web.agent()
        async with web.browser() as victim:
            page = await victim.get("/oauth/authorize", params=_params(web))
        async with web.browser() as attacker:
            answer = await attacker.post(
                "/oauth/authorize/login",
                data={**hidden_fields(page.text), "login": agent.login, "password": "x"},
            )

        assert answer.status_code == 403

    async def test_a_deactivated_agent_is_told_so(self, web: WebApp) -> None:
        agent = await web.agent()
        await set_agent_active(web.database, agent.id, False)
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            form = {**hidden_fields(page.text), "login": agent.login, "password": agent.password}
            answer = await browser.post("/oauth/authorize/login", data=form)

        assert answer.status_code == 403
        assert "Ce compte est désactivé" in answer.text

    async def test_the_session_id_changes_at_login(self, web: WebApp) -> None:
        agent = await web.agent()
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            before = browser.cookies["kanol_session"]
            form = {**hidden_fields(page.text), "login": agent.login, "password": agent.password}
            await browser.post("/oauth/authorize/login", data=form)
            after = browser.cookies["kanol_session"]

        assert before != after


class TestSecondFactor:
    async def test_a_wrong_code_is_shown_on_its_field(self, web: WebApp) -> None:
        agent = await web.agent(totp=True)
        async with web.browser() as browser:
            page = await browser.get("/oauth/authorize", params=_params(web))
            form = {**hidden_fields(page.text), "login": agent.login, "password": agent.password}
            moved = await browser.post("/oauth/authorize/login", data=form)
            totp_page = await browser.get(moved.headers["location"])
            assert 'id="code"' in totp_page.text
            wrong = "000000" if credentials.totp_code(agent.totp_secret or "") != "000000" else "1"
            answer = await browser.post(
                "/oauth/authorize/totp", data={**hidden_fields(totp_page.text), "code": wrong}
            )

        assert answer.status_code == 400
        assert 'id="code-error"' in answer.text
        assert "code-error" in answer.text.split('id="code"')[1].split(">")[0]

    async def test_a_code_is_not_accepted_twice(self, web: WebApp) -> None:
        agent = await web.agent(totp=True)
        assert agent.totp_secret is not None
        code = credentials.totp_code(agent.totp_secret)
        answers = []
        for _ in range(2):
            async with web.browser() as browser:
                page = await browser.get("/oauth/authorize", params=_params(web))
                form = {
                    **hidden_fields(page.text),
                    "login": agent.login,
                    "password": agent.password,
                }
                moved = await browser.post("/oauth/authorize/login", data=form)
                totp_page = await browser.get(moved.headers["location"])
                answers.append(
                    await browser.post(
                        "/oauth/authorize/totp",
                        data={**hidden_fields(totp_page.text), "code": code},
                    )
                )

        assert answers[0].status_code == 303
        assert answers[1].status_code == 400
