"""The authorisation server's machine endpoints: token, revocation, introspection, userinfo.

The token endpoint answers errors in the RFC 6749 §5.2 shape that OAuth client libraries
read, not as problem details; a throttled caller gets a 429 problem with Retry-After.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from kanol_common.db import as_utc
from kanol_identity import service, tokens
from kanol_identity.dependencies import SessionDep, SigningKeysDep, commit
from kanol_identity.errors import InvalidGrant, InvalidRequest, InvalidScope, UnsupportedGrantType
from kanol_identity.errors import OAuthError as OAuthErrorBase
from kanol_identity.models import DOCUMENTS_SCOPE, OPERATOR_SCOPE, ApiClient
from kanol_identity.oauth.clients import AUTH_METHODS, authenticate
from kanol_identity.repository import AgentRepository, ApiClientRepository
from kanol_identity.settings import IdentitySettings
from kanol_identity.signing import SigningKeys
from kanol_identity.throttle import TooManyAttempts

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
CLIENT_CREDENTIALS = "client_credentials"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
GRANT_TYPES = (CLIENT_CREDENTIALS, AUTHORIZATION_CODE, REFRESH_TOKEN)
_SINGLE_VALUED = (
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "token",
)
BEARER = "Bearer"
# RFC 6749 §5.1: a response carrying a token must not be cached anywhere.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

router = APIRouter(tags=["oauth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None


class OAuthErrorBody(BaseModel):
    error: str
    error_description: str


def get_settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


SettingsDep = Annotated[IdentitySettings, Depends(get_settings)]


def _form_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    client_auth = {
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "client_assertion": {"type": "string"},
        "client_assertion_type": {"type": "string"},
    }
    schema = {"type": "object", "required": required, "properties": properties | client_auth}
    return {"requestBody": {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": schema}}}}


@router.post(
    "/oauth/token",
    summary="Issue tokens: client credentials, authorisation code (PKCE), refresh token",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses={
        400: {"model": OAuthErrorBody},
        401: {"model": OAuthErrorBody},
        429: {"description": "Too many failed attempts (problem details, Retry-After)"},
    },
    openapi_extra=_form_body(
        ["grant_type"],
        {
            "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
            "scope": {"type": "string"},
            "code": {"type": "string"},
            "redirect_uri": {"type": "string"},
            "code_verifier": {"type": "string"},
            "refresh_token": {"type": "string"},
        },
    ),
)
async def token(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> Response:
    try:
        form = await _read_form(request)
        grant_type = _text(form.get("grant_type"))
        if not grant_type:
            raise InvalidRequest("The grant_type parameter is required.")
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType(f"The grant type {grant_type!r} is not supported.")

        client = await authenticate(request, session, form)
        if grant_type == CLIENT_CREDENTIALS:
            body = await _client_credentials(session, keys, settings, client, form)
        elif grant_type == AUTHORIZATION_CODE:
            body = await _authorization_code(session, keys, settings, client, form)
        else:
            body = await _refresh(session, keys, settings, client, form)
        await commit(session)
    except TooManyAttempts as refused:
        return throttled_response(refused)
    except tokens.GrantRevoked as error:
        await session.commit()  # the revocation the reuse caused must hold
        return error.response()
    except OAuthErrorBase as error:
        return error.response()

    return JSONResponse(body.model_dump(exclude_none=True), headers=NO_STORE)


def throttled_response(refused: TooManyAttempts) -> JSONResponse:
    body = refused.to_dict()
    headers = {**NO_STORE, "Retry-After": str(refused.retry_after)}
    return JSONResponse(
        body, status_code=429, headers=headers, media_type="application/problem+json"
    )


async def _client_credentials(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    form: FormData,
) -> TokenResponse:
    allowed = await service.allowed_scopes(session, client)
    scopes = _narrowed(allowed, _text(form.get("scope")), "The client may not request")
    issued = await tokens.issue_access_token(
        session,
        keys,
        settings,
        client_id=client.client_id,
        subject=client.client_id,
        siren=client.siren,
        scopes=scopes,
    )
    return TokenResponse(
        access_token=issued.access_token,
        token_type=BEARER,
        expires_in=issued.expires_in,
        scope=" ".join(issued.scopes),
    )


async def _authorization_code(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    form: FormData,
) -> TokenResponse:
    code = _text(form.get("code"))
    if not code:
        raise InvalidRequest("The code parameter is required.")

    grant = await tokens.redeem_code(
        session,
        code=code,
        client_id=client.client_id,
        redirect_uri=_text(form.get("redirect_uri")),
        code_verifier=_text(form.get("code_verifier")),
    )
    return await _agent_tokens(
        session,
        keys,
        settings,
        client,
        agent_id=grant.agent_id,
        scopes=grant.scopes,
        family_id=grant.family_id,
        auth_time=grant.auth_time,
        nonce=grant.nonce,
        family_expires_at=None,
    )


async def _refresh(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    form: FormData,
) -> TokenResponse:
    presented = _text(form.get("refresh_token"))
    if not presented:
        raise InvalidRequest("The refresh_token parameter is required.")

    used = await tokens.use_refresh_token(session, presented, client.client_id)
    scopes = _narrowed(used.scopes, _text(form.get("scope")), "The refresh token does not grant")
    return await _agent_tokens(
        session,
        keys,
        settings,
        client,
        agent_id=used.agent_id,
        scopes=scopes,
        family_id=used.family_id,
        auth_time=used.auth_time,
        nonce=None,
        family_expires_at=used.family_expires_at,
    )


async def _agent_tokens(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    *,
    agent_id: str,
    scopes: list[str] | tuple[str, ...],
    family_id: str,
    auth_time: datetime,
    nonce: str | None,
    family_expires_at: datetime | None,
) -> TokenResponse:
    """Access, refresh and (for openid) ID tokens for an agent still active."""
    agent = await AgentRepository(session).get(agent_id)
    if agent is None or not agent.honours(auth_time):
        # Deactivation ends the agent's sessions: nothing of the family works any more.
        await tokens.revoke_family(session, family_id, reason="agent_inactive")
        raise tokens.GrantRevoked("The agent's account is deactivated.")

    # Roles or subscriptions may have shrunk since the login: grant what still holds.
    granted = sorted(set(scopes) & await tokens.agent_scopes(session, agent, client))
    issued = await tokens.issue_access_token(
        session,
        keys,
        settings,
        client_id=client.client_id,
        subject=agent.id,
        siren=agent.siren,
        scopes=granted,
    )
    tokens.remember_in_family(
        session, family_id, issued, client_id=client.client_id, siren=agent.siren
    )
    refresh_token = await tokens.new_refresh_token(
        session,
        settings,
        client_id=client.client_id,
        agent_id=agent.id,
        scopes=granted,
        family_id=family_id,
        auth_time=auth_time,
        family_expires_at=family_expires_at,
    )
    id_token = None
    if tokens.OPENID_SCOPE in granted:
        id_token = await tokens.issue_id_token(
            session,
            keys,
            settings,
            client_id=client.client_id,
            agent=agent,
            scopes=granted,
            auth_time=auth_time,
            nonce=nonce,
            access_token=issued.access_token,
        )
    return TokenResponse(
        access_token=issued.access_token,
        token_type=BEARER,
        expires_in=issued.expires_in,
        scope=" ".join(issued.scopes),
        refresh_token=refresh_token,
        id_token=id_token,
    )


def _narrowed(
    allowed: list[str] | tuple[str, ...], requested: str | None, refusal: str
) -> list[str]:
    """The scopes asked for, all within ``allowed``; all of ``allowed`` when none asked."""
    if requested is None or not requested.strip():
        return sorted(allowed)

    wanted = set(requested.split())
    beyond = sorted(wanted - set(allowed))
    if beyond:
        raise InvalidScope(f"{refusal}: {' '.join(beyond)}")
    return sorted(wanted)


# -- revocation (RFC 7009) and introspection (RFC 7662) ------------------------------------


@router.post(
    "/oauth/revoke",
    summary="Revoke an access or refresh token (RFC 7009)",
    status_code=200,
    responses={401: {"model": OAuthErrorBody}},
    openapi_extra=_form_body(
        ["token"], {"token": {"type": "string"}, "token_type_hint": {"type": "string"}}
    ),
)
async def revoke(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> Response:
    try:
        form = await _read_form(request)
        client = await authenticate(request, session, form)
        presented = _required_token(form)
    except TooManyAttempts as refused:
        return throttled_response(refused)
    except OAuthErrorBase as error:
        return error.response()

    # RFC 7009 §2.2: an unknown or foreign token is answered 200 all the same.
    refresh = await tokens.find_refresh_token(session, presented)
    if refresh is not None and refresh.client_id == client.client_id:
        await tokens.revoke_family(session, refresh.family_id, reason="revoked_by_client")
    else:
        claims = await tokens.read_access_token(session, keys, settings, presented)
        if claims is not None and claims.get("client_id") == client.client_id:
            await tokens.revoke_access_token(session, claims)
    await commit(session)
    return Response(status_code=200, headers=NO_STORE)


@router.post(
    "/oauth/introspect",
    summary="Say whether a token is active and what it grants (RFC 7662)",
    responses={401: {"model": OAuthErrorBody}},
    openapi_extra=_form_body(
        ["token"], {"token": {"type": "string"}, "token_type_hint": {"type": "string"}}
    ),
)
async def introspect(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> Response:
    try:
        form = await _read_form(request)
        client = await authenticate(request, session, form)
        presented = _required_token(form)
    except TooManyAttempts as refused:
        return throttled_response(refused)
    except OAuthErrorBase as error:
        return error.response()

    body = await _introspection(session, keys, settings, client, presented)
    await commit(session)
    return JSONResponse(body, headers=NO_STORE)


async def _introspection(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    presented: str,
) -> dict[str, Any]:
    inactive = {"active": False}
    claims = await tokens.read_access_token(session, keys, settings, presented)
    if claims is not None:
        if not _may_introspect(client, claims):
            return inactive
        holder = (str(claims["client_id"]), str(claims["sub"]), _issued_at(claims))
        if not await _holder_is_live(session, *holder):
            return inactive
        return {
            "active": True,
            "token_type": BEARER,
            **{
                name: claims[name]
                for name in ("scope", "client_id", "sub", "siren", "iss", "aud", "exp", "iat")
                if name in claims
            },
            "jti": claims["jti"],
        }

    # A refresh token is opaque; only the client it was issued to may learn about it.
    refresh = await tokens.find_refresh_token(session, presented)
    if refresh is None or refresh.client_id != client.client_id:
        return inactive
    if not tokens.refresh_token_is_active(refresh):
        return inactive
    if not await _holder_is_live(session, refresh.client_id, refresh.agent_id, refresh.auth_time):
        return inactive
    return {
        "active": True,
        "token_type": REFRESH_TOKEN,
        "scope": " ".join(refresh.scopes),
        "client_id": refresh.client_id,
        "sub": refresh.agent_id,
        "exp": int(as_utc(refresh.expires_at).timestamp()),
        "iat": int(as_utc(refresh.issued_at).timestamp()),
    }


def _may_introspect(client: ApiClient, claims: dict[str, Any]) -> bool:
    """A client learns about its own organisation's access tokens; the platform's services
    and operators (``documents:read``, ``identity:admin``, granted by an operator only)
    about any. Another organisation's token is answered inactive, as an unknown one."""
    if claims.get("client_id") == client.client_id or claims.get("siren") == client.siren:
        return True
    return bool(set(client.scopes) & {OPERATOR_SCOPE, DOCUMENTS_SCOPE})


async def _holder_is_live(
    session: AsyncSession, client_id: str, subject: str, issued_at: datetime
) -> bool:
    """The token's client is not revoked and, for an agent's token, the agent is active and
    was not deactivated since the token (or its login) was issued."""
    client = await ApiClientRepository(session).get_by_client_id(client_id)
    if client is None or client.is_revoked:
        return False
    if subject == client_id:
        return True
    agent = await AgentRepository(session).get(subject)
    return agent is not None and agent.honours(issued_at)


def _issued_at(claims: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(claims["iat"]), UTC)


# -- userinfo (OpenID Connect Core §5.3) ---------------------------------------------------


USERINFO_SUMMARY = "The signed-in agent's claims: sub, name, email, organisation SIREN, roles"


@router.get("/oauth/userinfo", summary=USERINFO_SUMMARY, operation_id="userinfo_get")
@router.post("/oauth/userinfo", summary=USERINFO_SUMMARY, operation_id="userinfo_post")
async def userinfo(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> Response:
    presented = _bearer(request)
    if presented is None:
        return _bearer_error(401, "invalid_request", "A bearer access token is required.")
    claims = await tokens.read_access_token(session, keys, settings, presented)
    if claims is None:
        return _bearer_error(401, "invalid_token", "The access token is not valid.")
    if tokens.OPENID_SCOPE not in str(claims.get("scope", "")).split():
        return _bearer_error(403, "insufficient_scope", "The token lacks the openid scope.")

    agent = await AgentRepository(session).get(str(claims["sub"]))
    holder = (str(claims["client_id"]), str(claims["sub"]), _issued_at(claims))
    live = await _holder_is_live(session, *holder)
    if agent is None or not live:
        return _bearer_error(401, "invalid_token", "The token's agent or client is inactive.")
    body = tokens.agent_claims(agent, str(claims["scope"]).split())
    return JSONResponse(body, headers=NO_STORE)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _bearer_error(status: int, error: str, description: str) -> JSONResponse:
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, "WWW-Authenticate": challenge},
    )


# -- form reading --------------------------------------------------------------------------


async def _read_form(request: Request) -> FormData:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise InvalidRequest(f"The request must be sent as {FORM_MEDIA_TYPE}.")

    form = await request.form()
    repeated = [name for name in _SINGLE_VALUED if len(form.getlist(name)) > 1]
    if repeated:
        raise InvalidRequest(f"Parameters given more than once: {', '.join(repeated)}")
    return form


def _required_token(form: FormData) -> str:
    presented = _text(form.get("token"))
    if not presented:
        raise InvalidRequest("The token parameter is required.")
    return presented


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


__all__ = ["AUTH_METHODS", "GRANT_TYPES", "InvalidGrant", "router"]
