"""Signing out (OpenID Connect RP-Initiated Logout 1.0): ``/oauth/logout`` ends the
browser's session at identity, so that the next authorisation asks for the password again.

An application sends the agent here with ``id_token_hint`` (an ID token identity issued to
it for this agent; an expired one will do), and may name ``post_logout_redirect_uri`` (one
of the redirect URIs registered for the client the hint or ``client_id`` names) and
``state``. A hint naming the session's agent ends the session at once; without one, a page
asks the agent to confirm with a form carrying the session's CSRF token, so that a link on
another site cannot sign anyone out. An address not registered for the client is answered
with an error page, never followed. The tokens an application holds are its own to revoke
(RFC 7009).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from kanol_common.logging import get_logger
from kanol_identity import tokens
from kanol_identity.dependencies import SessionDep, SigningKeysDep
from kanol_identity.login import (
    COOKIE_PATH,
    PAGE_HEADERS,
    SESSION_COOKIE,
    STATIC_URL,
    PageError,
    csrf_matches,
    current_session,
    error_page,
    redirect_to,
    session_agent,
    settings_of,
    templates,
)
from kanol_identity.oauth.models import LoginSession
from kanol_identity.repository import ApiClientRepository

log = get_logger(__name__)

LOGOUT_PATH = "/oauth/logout"

router = APIRouter(tags=["login"], include_in_schema=False)


@dataclass(frozen=True)
class LogoutRequest:
    """Where to send the agent once signed out, if anywhere, and the hint's agent."""

    redirect_uri: str | None
    state: str | None
    client_id: str | None
    hinted_agent: str | None

    @property
    def fields(self) -> list[tuple[str, str]]:
        """What the confirmation form carries to the POST."""
        values = {
            "post_logout_redirect_uri": self.redirect_uri,
            "state": self.state,
            "client_id": self.client_id,
        }
        return [(name, value) for name, value in values.items() if value is not None]


@router.get(LOGOUT_PATH)
async def logout_page(request: Request, session: SessionDep, keys: SigningKeysDep) -> Response:
    try:
        logout = await _logout_request(request, session, keys, request.query_params)
    except PageError as error:
        return error_page(request, error)

    login_session = await current_session(session, request)
    if login_session is None or login_session.agent_id == logout.hinted_agent:
        return await _sign_out(session, login_session, logout)
    agent = await session_agent(session, login_session)
    return templates.TemplateResponse(
        request,
        "logout.html",
        {
            "static_url": STATIC_URL,
            "action": LOGOUT_PATH,
            "csrf_token": login_session.csrf_token,
            "request_fields": logout.fields,
            "agent_name": agent.display_name if agent is not None else "",
        },
        headers=PAGE_HEADERS,
    )


@router.post(LOGOUT_PATH)
async def confirm_logout(request: Request, session: SessionDep, keys: SigningKeysDep) -> Response:
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        logout = await _logout_request(request, session, keys, fields)
    except PageError as error:
        return error_page(request, error)

    login_session = await current_session(session, request)
    if login_session is not None and not csrf_matches(login_session, fields.get("csrf_token")):
        expired = PageError(
            "Formulaire expiré",
            "Ce formulaire ne vient pas de cette session : rechargez la page et recommencez.",
            status=403,
        )
        return error_page(request, expired)
    return await _sign_out(session, login_session, logout)


async def _logout_request(
    request: Request, session: SessionDep, keys: SigningKeysDep, fields: Mapping[str, str]
) -> LogoutRequest:
    settings = settings_of(request)
    hint = fields.get("id_token_hint")
    claims: dict[str, Any] | None = None
    if hint:
        claims = await tokens.read_id_token_hint(session, keys, settings, hint)
    client_id = fields.get("client_id") or None
    if claims is not None:
        if client_id is not None and client_id != claims["aud"]:
            raise PageError(
                "Demande invalide", "client_id ne désigne pas l'application du jeton.", status=400
            )
        client_id = str(claims["aud"])

    redirect_uri = fields.get("post_logout_redirect_uri") or None
    if redirect_uri is not None:
        repository = ApiClientRepository(session)
        client = None if client_id is None else await repository.get_by_client_id(client_id)
        if client is None or redirect_uri not in client.redirect_uris:
            raise PageError(
                "Adresse de retour inconnue",
                "L'adresse de retour n'est pas enregistrée pour cette application.",
                status=400,
            )
    return LogoutRequest(
        redirect_uri=redirect_uri,
        state=fields.get("state") or None,
        client_id=client_id,
        hinted_agent=None if claims is None else str(claims["sub"]),
    )


async def _sign_out(
    session: SessionDep, login_session: LoginSession | None, logout: LogoutRequest
) -> Response:
    if login_session is not None:
        log.info("login.signed_out", agent_id=login_session.agent_id, client_id=logout.client_id)
        await session.delete(login_session)
        await session.commit()

    response: Response
    if logout.redirect_uri is not None:
        response = redirect_to(logout.redirect_uri, {"state": logout.state})
    else:
        response = HTMLResponse(
            templates.get_template("logged_out.html").render(static_url=STATIC_URL),
            headers=PAGE_HEADERS,
        )
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response
