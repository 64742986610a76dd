"""The OAuth 2.0 endpoints: the token endpoint (client credentials), the JWKS, the metadata.

The token endpoint answers errors in the RFC 6749 §5.2 shape that OAuth client libraries
read, not as problem details.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import FormData

from kanol_identity import service
from kanol_identity.dependencies import SessionDep, SigningKeysDep, commit
from kanol_identity.errors import InvalidClient, InvalidRequest, OAuthError, UnsupportedGrantType
from kanol_identity.models import KNOWN_SCOPES
from kanol_identity.settings import IdentitySettings

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPES = ("client_credentials",)
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
_SINGLE_VALUED = ("grant_type", "scope", "client_id", "client_secret")

# TODO: the token endpoint has no rate limit of its own; each request costs an Argon2
# verification (about 64 MiB and tens of milliseconds), so a flood of bad requests can load
# identity until a limit is set here or in front of it.
router = APIRouter(tags=["oauth"])


BEARER = "Bearer"


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class OAuthErrorBody(BaseModel):
    error: str
    error_description: str


def get_settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


SettingsDep = Annotated[IdentitySettings, Depends(get_settings)]


@router.post(
    "/oauth/token",
    summary="Issue an access token (client credentials grant)",
    response_model=TokenResponse,
    responses={400: {"model": OAuthErrorBody}, 401: {"model": OAuthErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM_MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
                            "scope": {"type": "string"},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def token(
    request: Request, session: SessionDep, keys: SigningKeysDep, settings: SettingsDep
) -> JSONResponse:
    try:
        form = await _read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest("The grant_type parameter is required.")
        if grant_type not in GRANT_TYPES:
            raise UnsupportedGrantType(f"The grant type {grant_type!r} is not supported.")

        client_id, secret = _client_credentials(request, form)
        client = await service.authenticate_client(session, client_id, secret)
        scopes = service.granted_scopes(client, _text(form.get("scope")))
        issued = await service.issue_access_token(session, keys, settings, client, scopes)
        await commit(session)
    except OAuthError as error:
        return error.response()

    body = TokenResponse(
        access_token=issued.access_token,
        token_type=BEARER,
        expires_in=issued.expires_in,
        scope=" ".join(issued.scopes),
    )
    # RFC 6749 §5.1: a response carrying a token must not be cached anywhere.
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return JSONResponse(body.model_dump(), headers=headers)


async def _read_form(request: Request) -> FormData:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise InvalidRequest(f"The token request must be sent as {FORM_MEDIA_TYPE}.")

    form = await request.form()
    repeated = [name for name in _SINGLE_VALUED if len(form.getlist(name)) > 1]
    if repeated:
        raise InvalidRequest(f"Parameters given more than once: {', '.join(repeated)}")
    return form


def _client_credentials(request: Request, form: FormData) -> tuple[str, str]:
    """The client's id and secret, from HTTP Basic or from the form, never from both."""
    basic = _basic_credentials(request.headers.get("authorization"))
    posted_id = _text(form.get("client_id"))
    posted_secret = _text(form.get("client_secret"))
    if basic is not None and posted_secret is not None:
        raise InvalidRequest("Use one client authentication method, not two.")
    if basic is not None:
        return basic
    if posted_id and posted_secret:
        return posted_id, posted_secret
    raise InvalidClient("Client authentication is required (HTTP Basic or client_secret_post).")


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None

    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("The Basic credentials cannot be decoded.") from exc
    client_id, separator, secret = decoded.partition(":")
    if not separator or not client_id or not secret:
        raise InvalidClient("The Basic credentials must be client_id:client_secret.")
    # RFC 6749 §2.3.1: the client form-urlencodes both parts before encoding them.
    return unquote_plus(client_id), unquote_plus(secret)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@router.get("/.well-known/jwks.json", summary="The public keys that sign access tokens")
async def jwks(session: SessionDep, keys: SigningKeysDep) -> JSONResponse:
    key_set = await keys.public_key_set(session)
    return JSONResponse(
        dict(key_set),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/jwk-set+json",
    )


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
async def metadata(settings: SettingsDep) -> JSONResponse:
    issuer = settings.token_issuer.rstrip("/")
    body = {
        "issuer": settings.token_issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "response_types_supported": [],
        "scopes_supported": list(KNOWN_SCOPES),
    }
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
