"""What the authorisation server publishes: its metadata (RFC 8414 and OpenID Connect
Discovery, one document at both addresses) and its public keys (JWKS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kanol_identity.dependencies import SessionDep, SigningKeysDep
from kanol_identity.models import KNOWN_SCOPES
from kanol_identity.oauth.clients import ASSERTION_ALGORITHMS, AUTH_METHODS
from kanol_identity.oauth.endpoints import GRANT_TYPES, SettingsDep
from kanol_identity.settings import IdentitySettings
from kanol_identity.signing import ALGORITHM
from kanol_identity.tokens import OIDC_SCOPES

PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}

router = APIRouter(tags=["oauth"])


@router.get("/.well-known/jwks.json", summary="The public keys that sign tokens")
async def jwks(session: SessionDep, keys: SigningKeysDep) -> JSONResponse:
    key_set = await keys.public_key_set(session)
    return JSONResponse(dict(key_set), headers=PUBLIC_CACHE, media_type="application/jwk-set+json")


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
async def oauth_metadata(settings: SettingsDep) -> JSONResponse:
    return JSONResponse(server_metadata(settings), headers=PUBLIC_CACHE)


@router.get(
    "/.well-known/openid-configuration",
    summary="OpenID Connect Discovery 1.0: the same metadata",
)
async def openid_configuration(settings: SettingsDep) -> JSONResponse:
    return JSONResponse(server_metadata(settings), headers=PUBLIC_CACHE)


def server_metadata(settings: IdentitySettings) -> dict[str, Any]:
    issuer = settings.token_issuer.rstrip("/")
    return {
        "issuer": settings.token_issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "scopes_supported": [*OIDC_SCOPES, *KNOWN_SCOPES],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "name",
            "email",
            "email_verified",
            "siren",
            "roles",
        ],
        "authorization_response_iss_parameter_supported": True,
    }
