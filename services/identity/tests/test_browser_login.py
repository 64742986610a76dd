"""The login, second factor and consent pages in a real headless Chromium (Debian's, driven
by selenium through chromedriver), against identity running as its own uvicorn process.

The browser follows the authorisation code flow with PKCE to a local callback that
exchanges the code for tokens, as a web application of an authority would.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from kanol_common.auth import JwksVerifier
from kanol_common.db import Database
from kanol_common.testing.processes import wait_ready
from kanol_identity import credentials
from kanol_identity.models import OrganisationKind, Service
from kanol_identity.oauth.testing import (
    AgentLogin,
    add_agent,
    claims_of,
    pkce_pair,
    set_redirect_uris,
)
from kanol_identity.seed import SeedRequest, seed
from kanol_identity.testing import new_siren

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
CLIENT_ID = "mairie-web"
CLIENT_SECRET = secrets.token_urlsafe(24)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Callback:
    """The web application's redirect_uri: exchanges the code it receives for tokens."""

    url: str
    token_endpoint: str
    verifier: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, str]] = field(default_factory=list)


def _handler(callback: Callback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/callback":  # the browser's favicon.ico, say
                self.send_error(404)
                return
            answer = {k: v[0] for k, v in parse_qs(parts.query).items()}
            callback.answers.append(answer)
            if "code" in answer:
                response = httpx.post(
                    callback.token_endpoint,
                    data={
                        "grant_type": "authorization_code",
                        "code": answer["code"],
                        "redirect_uri": callback.url,
                        "code_verifier": callback.verifier,
                    },
                    auth=(CLIENT_ID, CLIENT_SECRET),
                    timeout=10,
                )
                callback.tokens = response.json()
            body = f'<!doctype html><title>Retour</title><p id="result">{sorted(answer)}</p>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture(scope="module")
def database_url(postgres_database: Callable[[str], str]) -> str:
    return postgres_database("identity_browser")


@pytest.fixture(scope="module")
def identity_process(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: Any
) -> Iterator[str]:
    """identity served by uvicorn on a free port; its base URL."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise RuntimeError("Chromium is missing: run `bash scripts/chromium.sh install`.")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "KANOL_ENVIRONMENT": "test",
        "KANOL_DATABASE_URL": database_url,
        "KANOL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KANOL_KAFKA_TOPIC_PREFIX": f"browser{secrets.token_hex(4)}.",
        "KANOL_TOKEN_ISSUER": url,
        "KANOL_IDENTITY_URL": url,
        "KANOL_SESSION_COOKIE_SECURE": "false",  # plain HTTP on the loopback
    }
    log = tmp_path_factory.mktemp("identity") / "identity.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "kanol_identity", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready("identity", f"{url}/readyz", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def callback(identity_process: str) -> Iterator[Callback]:
    port = _free_port()
    callback = Callback(f"http://127.0.0.1:{port}/callback", f"{identity_process}/oauth/token")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(callback))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield callback
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def agent(database_url: str, callback: Callback) -> AgentLogin:
    """A commune subscribed to actes, its web application, an agent with TOTP enrolled."""

    async def prepare() -> AgentLogin:
        database = Database(database_url)
        try:
            siren = new_siren()
            request = SeedRequest(
                siren=siren,
                name="Commune de Plouzané",
                kind=OrganisationKind.COMMUNE,
                departement="029",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                scopes=("actes:read", "actes:write"),
                services=(Service.ACTES,),
            )
            await seed(database, request)
            await set_redirect_uris(database, CLIENT_ID, [callback.url])
            return await add_agent(database, siren, roles=["actes:submitter"], totp=True)
        finally:
            await database.dispose()

    return asyncio.run(prepare())


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGS:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _authorize_url(identity_url: str, callback: Callback, **extra: str) -> tuple[str, str, str]:
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    callback.verifier = verifier
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": callback.url,
        "scope": "openid profile email actes:write",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{identity_url}/oauth/authorize?{urlencode(params)}", state, nonce


def _wait_for(driver: webdriver.Chrome, element_id: str) -> Any:
    return WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, element_id))


def test_an_agent_signs_in_with_a_second_factor_and_consents(
    identity_process: str, callback: Callback, agent: AgentLogin, browser: webdriver.Chrome
) -> None:
    url, state, nonce = _authorize_url(identity_process, callback)
    browser.get(url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Connexion"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=password]").text == "Mot de passe"

    # A wrong password: the page says so, on the field, and keeps the login typed.
    browser.find_element(By.ID, "login").send_keys(agent.login)
    browser.find_element(By.ID, "password").send_keys("pas le bon mot de passe")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = _wait_for(browser, "password-error")
    assert error.text == "Identifiant ou mot de passe incorrect."
    password = browser.find_element(By.ID, "password")
    assert password.get_attribute("aria-invalid") == "true"
    assert password.get_attribute("aria-describedby") == "password-error"
    assert browser.find_element(By.ID, "login").get_attribute("value") == agent.login
    assert "Erreur" in browser.title

    browser.find_element(By.ID, "password").send_keys(agent.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The second factor.
    code_field = _wait_for(browser, "code")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Code de vérification"
    assert agent.totp_secret is not None
    code_field.send_keys(credentials.totp_code(agent.totp_secret))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The consent page names the application and what it asks.
    scopes = _wait_for(browser, "scopes")
    assert "actes:write" in scopes.text
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Autoriser")
    cookie = browser.get_cookie("kanol_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    browser.find_element(By.CSS_SELECTOR, "button[value=allow]").click()

    # Back at the application, which exchanged the code.
    result = _wait_for(browser, "result")
    assert "code" in result.text
    assert browser.current_url.startswith(callback.url)
    answer = callback.answers[-1]
    assert answer["state"] == state
    assert answer["iss"] == identity_process
    tokens = callback.tokens
    assert tokens["token_type"] == "Bearer", tokens
    assert set(tokens["scope"].split()) == {"openid", "profile", "email", "actes:write"}
    assert claims_of(tokens["id_token"])["nonce"] == nonce
    assert claims_of(tokens["id_token"])["sub"] == agent.id
    verifier = JwksVerifier(
        f"{identity_process}/.well-known/jwks.json", issuer=identity_process, audience="kanol"
    )
    caller = asyncio.run(verifier.verify(tokens["access_token"]))
    assert caller.siren == agent.siren
    assert caller.client_id == CLIENT_ID
    assert "actes:write" in caller.scopes
    userinfo = httpx.get(
        f"{identity_process}/oauth/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert userinfo.json()["email"] == agent.login

    # Signing out: identity asks to confirm (no ID token given), then the session is gone.
    browser.get(f"{identity_process}/oauth/logout")
    assert _wait_for(browser, "contenu").find_element(By.TAG_NAME, "h1").text == (
        "Se déconnecter ?"
    )
    browser.find_element(By.CSS_SELECTOR, "button[value=logout]").click()
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "h1").text == "Vous êtes déconnecté"
    )
    assert browser.get_cookie("kanol_session") is None


def test_a_refused_consent_and_a_bad_redirect_uri(
    identity_process: str, callback: Callback, agent: AgentLogin, browser: webdriver.Chrome
) -> None:
    # A redirect_uri the application did not register: an error page, no redirect.
    url, _, _ = _authorize_url(
        identity_process, callback, redirect_uri="http://127.0.0.1:9/elsewhere"
    )
    browser.get(url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Adresse de retour refusée"
    assert browser.current_url.startswith(identity_process)

    # An unknown application: an error page too.
    url, _, _ = _authorize_url(identity_process, callback, client_id="nobody-such")
    browser.get(url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Application inconnue"

    # Signed in already (first test's session is another browser: sign in again). The
    # agent allowed this application in the first test; prompt=consent asks again: refuse.
    url, state, _ = _authorize_url(identity_process, callback, prompt="consent")
    browser.get(url)
    browser.find_element(By.ID, "login").send_keys(agent.login)
    browser.find_element(By.ID, "password").send_keys(agent.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    code_field = _wait_for(browser, "code")
    assert agent.totp_secret is not None
    # The first test spent this step's code: wait for the next one rather than reuse it.
    code = _next_totp_code(agent.totp_secret)
    code_field.send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for(browser, "scopes")
    browser.find_element(By.CSS_SELECTOR, "button[value=deny]").click()

    _wait_for(browser, "result")
    answer = callback.answers[-1]
    assert answer["error"] == "access_denied"
    assert answer["state"] == state
    assert "code" not in answer


def _next_totp_code(secret: str) -> str:
    """A code of a later time step than any used so far (the server refuses reuse)."""
    step = credentials.TOTP_INTERVAL_SECONDS
    return credentials.totp_code(secret, at=time.time() + step)
