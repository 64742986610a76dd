"""The authorisation endpoint's pages, for agents in a browser (OAuth 2.0 code flow, PKCE).

GET ``/oauth/authorize`` checks the request, then shows the step the browser's session is
at: the login form, the TOTP form when the agent enrolled a second factor, or the consent
page. Each form posts to its own address with the request in hidden fields, is checked
again there, and answers with a redirect back to ``/oauth/authorize`` (post/redirect/get)
or, once the agent consents, to the client's redirect_uri with the code and the state.

A request naming an unknown client or a redirect_uri the client did not register is
answered with an error page and never redirected: the address could be anyone's. Plain
HTML forms, no script: labels on every field, errors tied to their field and summed up at
the top of the page. The session cookie is HttpOnly and SameSite=Lax; every form carries
the session's CSRF token.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from kanol_common.db import as_utc
from kanol_common.logging import get_logger
from kanol_identity import credentials, tokens
from kanol_identity.dependencies import SessionDep
from kanol_identity.models import Agent, ApiClient, utcnow
from kanol_identity.oauth.clients import client_address
from kanol_identity.oauth.models import Consent, LoginSession, digest
from kanol_identity.repository import AgentRepository, ApiClientRepository
from kanol_identity.settings import IdentitySettings
from kanol_identity.throttle import Throttle, TooManyAttempts, account_key, address_key

log = get_logger(__name__)

PACKAGE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=PACKAGE / "templates")

SESSION_COOKIE = "kanol_session"
COOKIE_PATH = "/oauth"
STATIC_URL = "/oauth/static/login.css"
AUTHORIZE_PATH = "/oauth/authorize"
REQUEST_PARAMETERS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
)
ANONYMOUS, TOTP, AUTHENTICATED = "anonymous", "totp", "authenticated"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # The consent page must never be framed (clickjacking). No form-action: Chromium applies
    # it to the redirect after a form, which goes to the client's own address.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
SCOPE_LABELS = {
    "openid": "savoir qui vous êtes (votre identifiant Kanol)",
    "profile": "connaître votre nom",
    "email": "connaître votre adresse électronique",
    "org:admin": "administrer les agents et applications de votre organisation",
}
VERB_LABELS = {"write": "déposer et modifier vos", "read": "consulter vos"}
SERVICE_LABELS = {
    "actes": "actes (contrôle de légalité)",
    "pes": "flux comptables PES",
    "archive": "archives",
    "ged": "documents de la GED",
    "ads": "dossiers d'urbanisme",
    "certificates": "certificats",
}
WRONG_CREDENTIALS = "Identifiant ou mot de passe incorrect."
INACTIVE = "Ce compte est désactivé. Contactez l'administrateur de votre organisation."
REQUIRED = {"login": "Saisissez votre identifiant.", "password": "Saisissez votre mot de passe."}

router = APIRouter(tags=["login"], include_in_schema=False)


class PageError(Exception):
    """The request cannot be trusted with a redirect: an error page, in the browser."""

    def __init__(self, title: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail
        self.status = status


class RedirectError(Exception):
    """An error the client must hear about, at its (registered) redirect_uri."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: ApiClient
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str
    nonce: str | None
    parameters: tuple[tuple[str, str], ...]
    # OpenID Connect's prompt values; "consent" asks again what was allowed before.
    prompt: frozenset[str] = frozenset()

    def query(self) -> str:
        return urlencode(self.parameters)


# -- pages ---------------------------------------------------------------------------------


@router.get(AUTHORIZE_PATH)
async def authorize(request: Request, session: SessionDep) -> Response:
    settings = settings_of(request)
    try:
        authz = await _authorization_request(session, request.query_params.multi_items())
    except PageError as error:
        return error_page(request, error)
    except RedirectError as error:
        query = request.query_params
        return _redirect_error(settings, query.get("redirect_uri"), error, query.get("state"))

    login_session, cookie = await _current_or_new_session(session, request, settings)
    agent = await session_agent(session, login_session)
    if login_session.stage == AUTHENTICATED and agent is not None:
        if await _consented_before(session, authz, agent):
            issued = await _issue_code(session, settings, authz, agent, login_session)
            return _with_cookie(issued, cookie, settings)
        response = await _consent_page(request, session, authz, login_session, agent)
    elif login_session.stage == TOTP and agent is not None:
        response = _page(request, "totp.html", authz, login_session, action="/oauth/authorize/totp")
    else:
        errors = {}
        if login_session.stage != ANONYMOUS:  # the agent was deactivated meanwhile
            login_session.stage, login_session.agent_id = ANONYMOUS, None
            session.add(login_session)
            errors["login"] = "Votre session a pris fin ; reconnectez-vous."
        response = _login_page(request, authz, login_session, errors=errors)
    await session.commit()
    return _with_cookie(response, cookie, settings)


@router.post("/oauth/authorize/login")
async def submit_login(request: Request, session: SessionDep) -> Response:
    settings = settings_of(request)
    form = await request.form()
    try:
        authz, login_session = await _checked_post(request, session, form)
    except PageError as error:
        return error_page(request, error)
    except RedirectError as error:
        return _redirect_error(
            settings, _text(form.get("redirect_uri")), error, _text(form.get("state"))
        )

    login = (_text(form.get("login")) or "").strip().lower()
    password = _text(form.get("password")) or ""
    errors = _missing({"login": login, "password": password})
    if errors:
        return _login_page(request, authz, login_session, errors=errors, login=login, status=400)

    throttle = _throttle(request)
    keys = [account_key(login), address_key(client_address(request))]
    try:
        on_record = await throttle.check(keys)
    except TooManyAttempts as refused:
        return _throttled_page(request, authz, login_session, refused, login=login)

    agent = await AgentRepository(session).get_by_login(login)
    if agent is None:
        await credentials.spend_verification_time(password)
    if agent is None or not await credentials.password_matches(agent.password_hash, password):
        await throttle.failed(keys)
        log.info("login.refused", reason="wrong_credentials")
        errors = {"password": WRONG_CREDENTIALS}
        return _login_page(request, authz, login_session, errors=errors, login=login, status=400)
    await throttle.succeeded(keys[:1], on_record)
    if not agent.active:
        log.info("login.refused", reason="inactive", agent_id=agent.id, tenant=agent.siren)
        errors = {"login": INACTIVE}
        return _login_page(request, authz, login_session, errors=errors, login=login, status=403)

    if credentials.needs_rehash(agent.password_hash):
        agent.password_hash = await credentials.hash_password(password)
        session.add(agent)
    stage = TOTP if agent.totp_enabled else AUTHENTICATED
    cookie = await _replace_session(session, settings, login_session, agent, stage)
    await session.commit()
    log.info("login.password_accepted", agent_id=agent.id, tenant=agent.siren, next=stage)
    return _with_cookie(_back_to_authorize(authz), cookie, settings)


@router.post("/oauth/authorize/totp")
async def submit_totp(request: Request, session: SessionDep) -> Response:
    settings = settings_of(request)
    form = await request.form()
    try:
        authz, login_session = await _checked_post(request, session, form)
    except PageError as error:
        return error_page(request, error)
    except RedirectError as error:
        return _redirect_error(
            settings, _text(form.get("redirect_uri")), error, _text(form.get("state"))
        )

    agent = await session_agent(session, login_session)
    if login_session.stage != TOTP or agent is None or agent.totp_secret is None:
        return _back_to_authorize(authz)

    throttle = _throttle(request)
    keys = [account_key(agent.login), address_key(client_address(request))]
    try:
        on_record = await throttle.check(keys)
    except TooManyAttempts as refused:
        return _page(
            request,
            "totp.html",
            authz,
            login_session,
            action="/oauth/authorize/totp",
            errors={"code": _throttled_message(refused)},
            status=429,
            headers={"Retry-After": str(refused.retry_after)},
        )

    code = (_text(form.get("code")) or "").strip()
    step = credentials.totp_verify(agent.totp_secret, code, last_step=agent.totp_last_step)
    if step is None:
        await throttle.failed(keys)
        log.info("login.totp_refused", agent_id=agent.id, tenant=agent.siren)
        message = "Le code est incorrect ou a déjà servi ; saisissez le code affiché maintenant."
        return _page(
            request,
            "totp.html",
            authz,
            login_session,
            action="/oauth/authorize/totp",
            errors={"code": message},
            status=400,
        )
    await throttle.succeeded(keys[:1], on_record)

    agent.totp_last_step = step
    session.add(agent)
    cookie = await _replace_session(session, settings, login_session, agent, AUTHENTICATED)
    await session.commit()
    log.info("login.totp_accepted", agent_id=agent.id, tenant=agent.siren)
    return _with_cookie(_back_to_authorize(authz), cookie, settings)


@router.post("/oauth/authorize/consent")
async def submit_consent(request: Request, session: SessionDep) -> Response:
    settings = settings_of(request)
    form = await request.form()
    try:
        authz, login_session = await _checked_post(request, session, form)
    except PageError as error:
        return error_page(request, error)
    except RedirectError as error:
        return _redirect_error(
            settings, _text(form.get("redirect_uri")), error, _text(form.get("state"))
        )

    agent = await session_agent(session, login_session)
    if login_session.stage != AUTHENTICATED or agent is None:
        return _back_to_authorize(authz)
    if form.get("decision") != "allow":
        log.info("login.consent_refused", agent_id=agent.id, client_id=authz.client.client_id)
        await _forget_consent(session, agent, authz.client)
        await session.commit()
        denied = RedirectError("access_denied", "The agent refused the authorisation.")
        return _redirect_error(settings, authz.redirect_uri, denied, authz.state)

    await _remember_consent(session, agent, authz.client, await _granted(session, authz, agent))
    return await _issue_code(session, settings, authz, agent, login_session)


async def _issue_code(
    session: AsyncSession,
    settings: IdentitySettings,
    authz: AuthorizationRequest,
    agent: Agent,
    login_session: LoginSession,
) -> Response:
    """The code for what the agent allowed, sent to the client's redirect_uri."""
    code = await tokens.new_authorization_code(
        session,
        settings,
        client=authz.client,
        agent=agent,
        redirect_uri=authz.redirect_uri,
        scopes=await _granted(session, authz, agent),
        code_challenge=authz.code_challenge,
        nonce=authz.nonce,
        auth_time=login_session.authenticated_at or utcnow(),
    )
    await session.commit()
    parameters = {"code": code, "state": authz.state, "iss": settings.token_issuer}
    return redirect_to(authz.redirect_uri, parameters)


@router.get(STATIC_URL)
async def stylesheet() -> FileResponse:
    return FileResponse(
        PACKAGE / "static" / "login.css",
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


# -- the authorisation request -------------------------------------------------------------


async def _authorization_request(
    session: AsyncSession, items: list[tuple[str, str]]
) -> AuthorizationRequest:
    """The request's parameters checked: page errors first, then redirectable ones."""
    params: dict[str, str] = {}
    for name, value in items:
        if name not in REQUEST_PARAMETERS:
            continue
        if name in params:
            raise PageError("Requête invalide", f"Le paramètre {name} est donné deux fois.")
        params[name] = value

    client_id = params.get("client_id", "")
    client = await ApiClientRepository(session).get_by_client_id(client_id) if client_id else None
    if client is None or client.is_revoked:
        raise PageError(
            "Application inconnue",
            "L'application qui vous a envoyé ici n'est pas enregistrée auprès de Kanol.",
        )
    redirect_uri = params.get("redirect_uri", "")
    # Exact string comparison (RFC 9700 §4.1.3): no prefix, no pattern.
    if redirect_uri not in client.redirect_uris:
        raise PageError(
            "Adresse de retour refusée",
            "L'adresse de retour demandée n'est pas enregistrée pour cette application ; "
            "vous n'y serez pas renvoyé.",
        )

    if params.get("response_type") != "code":
        raise RedirectError("unsupported_response_type", "Only response_type=code is supported.")
    if params.get("code_challenge_method") != "S256":
        raise RedirectError("invalid_request", "PKCE is required, with S256 (plain is refused).")
    code_challenge = params.get("code_challenge", "")
    if not tokens.is_valid_challenge(code_challenge):
        raise RedirectError("invalid_request", "The code_challenge must be 43 base64url chars.")
    scopes = tuple(params.get("scope", "").split()) or (tokens.OPENID_SCOPE,)
    unknown = sorted(set(scopes) - set(client.scopes) - set(tokens.OIDC_SCOPES))
    if unknown:
        raise RedirectError("invalid_scope", f"The client may not request: {' '.join(unknown)}")

    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=params.get("state"),
        code_challenge=code_challenge,
        nonce=params.get("nonce"),
        parameters=tuple((name, params[name]) for name in REQUEST_PARAMETERS if name in params),
        prompt=frozenset(params.get("prompt", "").split()),
    )


async def _checked_post(
    request: Request, session: AsyncSession, form: FormData
) -> tuple[AuthorizationRequest, LoginSession]:
    """A form's request checked again, and its CSRF token against the session's."""
    items = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    authz = await _authorization_request(session, items)
    login_session = await current_session(session, request)
    if login_session is None or not csrf_matches(login_session, _text(form.get("csrf_token"))):
        raise PageError(
            "Session expirée",
            "Votre session a expiré ou ce formulaire ne vient pas de Kanol. "
            "Revenez à l'application et recommencez.",
            status=403,
        )
    return authz, login_session


async def _granted(
    session: AsyncSession, authz: AuthorizationRequest, agent: Agent
) -> tuple[str, ...]:
    """What the agent can give of what the client asked: its roles decide."""
    return tuple(
        sorted(set(authz.scopes) & await tokens.agent_scopes(session, agent, authz.client))
    )


async def _consented_before(
    session: AsyncSession, authz: AuthorizationRequest, agent: Agent
) -> bool:
    """Whether the agent already allowed this application everything it may give now."""
    if "consent" in authz.prompt:
        return False
    consent = await session.get(Consent, (agent.id, authz.client.client_id))
    if consent is None:
        return False
    return set(await _granted(session, authz, agent)) <= set(consent.scopes)


async def _remember_consent(
    session: AsyncSession, agent: Agent, client: ApiClient, granted: tuple[str, ...]
) -> None:
    consent = await session.get(Consent, (agent.id, client.client_id))
    if consent is None:
        consent = Consent(
            agent_id=agent.id, client_id=client.client_id, scopes=[], granted_at=utcnow()
        )
    consent.scopes = sorted(set(consent.scopes) | set(granted))
    consent.granted_at = utcnow()
    session.add(consent)
    log.info("login.consent_given", agent_id=agent.id, client_id=client.client_id)


async def _forget_consent(session: AsyncSession, agent: Agent, client: ApiClient) -> None:
    consent = await session.get(Consent, (agent.id, client.client_id))
    if consent is not None:
        await session.delete(consent)


# -- sessions ------------------------------------------------------------------------------


def csrf_matches(login_session: LoginSession, presented: str | None) -> bool:
    """Whether a form carries its session's CSRF token (compared in constant time)."""
    return secrets.compare_digest((presented or "").encode(), login_session.csrf_token.encode())


async def current_session(session: AsyncSession, request: Request) -> LoginSession | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    row = await session.get(LoginSession, digest(raw))
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    return row


async def _current_or_new_session(
    session: AsyncSession, request: Request, settings: IdentitySettings
) -> tuple[LoginSession, str | None]:
    current = await current_session(session, request)
    if current is not None:
        return current, None
    return _new_session(session, settings, ANONYMOUS, None)


def _new_session(
    session: AsyncSession, settings: IdentitySettings, stage: str, agent: Agent | None
) -> tuple[LoginSession, str]:
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    row = LoginSession(
        session_hash=digest(raw),
        csrf_token=secrets.token_urlsafe(32),
        stage=stage,
        agent_id=agent.id if agent else None,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.login_session_lifetime_seconds),
        authenticated_at=now if stage == AUTHENTICATED else None,
    )
    session.add(row)
    return row, raw


async def _replace_session(
    session: AsyncSession,
    settings: IdentitySettings,
    previous: LoginSession,
    agent: Agent,
    stage: str,
) -> str:
    """A new session id at each step up, so an id planted before login is worth nothing."""
    await session.delete(previous)
    _, raw = _new_session(session, settings, stage, agent)
    return raw


async def session_agent(session: AsyncSession, login_session: LoginSession) -> Agent | None:
    """The session's agent while it honours the session: deactivation ends it for good."""
    if login_session.agent_id is None:
        return None
    agent = await AgentRepository(session).get(login_session.agent_id)
    if agent is None or not agent.honours(login_session.created_at):
        return None
    return agent


def _with_cookie(response: Response, raw: str | None, settings: IdentitySettings) -> Response:
    if raw is not None:
        response.set_cookie(
            SESSION_COOKIE,
            raw,
            max_age=settings.login_session_lifetime_seconds,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=settings.session_cookie_secure,
        )
    return response


# -- rendering -----------------------------------------------------------------------------


def _page(
    request: Request,
    template: str,
    authz: AuthorizationRequest,
    login_session: LoginSession,
    *,
    action: str,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {
            "static_url": STATIC_URL,
            "action": action,
            "csrf_token": login_session.csrf_token,
            "request_fields": authz.parameters,
            "client_name": authz.client.name or authz.client.client_id,
            "errors": dict(errors or {}),
            **context,
        },
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )


def _login_page(
    request: Request,
    authz: AuthorizationRequest,
    login_session: LoginSession,
    *,
    errors: Mapping[str, str],
    login: str = "",
    status: int = 200,
) -> HTMLResponse:
    return _page(
        request,
        "login.html",
        authz,
        login_session,
        action="/oauth/authorize/login",
        errors=errors,
        status=status,
        login=login,
    )


def _throttled_page(
    request: Request,
    authz: AuthorizationRequest,
    login_session: LoginSession,
    refused: TooManyAttempts,
    *,
    login: str,
) -> HTMLResponse:
    return _page(
        request,
        "login.html",
        authz,
        login_session,
        action="/oauth/authorize/login",
        errors={"password": _throttled_message(refused)},
        status=429,
        headers={"Retry-After": str(refused.retry_after)},
        login=login,
    )


def _throttled_message(refused: TooManyAttempts) -> str:
    minutes, seconds = divmod(refused.retry_after, 60)
    wait = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"Trop d'essais infructueux : réessayez dans {wait}."


async def _consent_page(
    request: Request,
    session: AsyncSession,
    authz: AuthorizationRequest,
    login_session: LoginSession,
    agent: Agent,
) -> HTMLResponse:
    granted = await _granted(session, authz, agent)
    return _page(
        request,
        "consent.html",
        authz,
        login_session,
        action="/oauth/authorize/consent",
        scopes=[(scope, scope_label(scope)) for scope in granted],
        agent_name=agent.display_name,
        agent_login=agent.login,
    )


def scope_label(scope: str) -> str:
    if scope in SCOPE_LABELS:
        return SCOPE_LABELS[scope]
    service, _, verb = scope.partition(":")
    if service in SERVICE_LABELS and verb in VERB_LABELS:
        return f"{VERB_LABELS[verb]} {SERVICE_LABELS[service]}"
    return scope


def error_page(request: Request, error: PageError) -> HTMLResponse:
    log.info("login.request_refused", reason=error.title)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"static_url": STATIC_URL, "title": error.title, "detail": error.detail},
        status_code=error.status,
        headers=PAGE_HEADERS,
    )


def _back_to_authorize(authz: AuthorizationRequest) -> RedirectResponse:
    return RedirectResponse(f"{AUTHORIZE_PATH}?{authz.query()}", status_code=303)


def _redirect_error(
    settings: IdentitySettings,
    redirect_uri: str | None,
    error: RedirectError,
    state: str | None = None,
) -> Response:
    """Only reached once the redirect_uri was found registered for the client."""
    parameters = {
        "error": error.error,
        "error_description": error.description,
        "state": state,
        "iss": settings.token_issuer,
    }
    return redirect_to(redirect_uri or "", parameters)


def redirect_to(redirect_uri: str, parameters: Mapping[str, str | None]) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in parameters.items() if value is not None]
    location = urlunsplit(parts._replace(query=urlencode(query)))
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


# -- helpers -------------------------------------------------------------------------------


def settings_of(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


def _throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


def _missing(fields: Mapping[str, str]) -> dict[str, str]:
    return {name: REQUIRED[name] for name, value in fields.items() if not value}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
