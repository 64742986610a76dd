"""What the authorisation server issues and remembers: access, ID and refresh tokens, codes.

Access and ID tokens are JWTs signed with the current signing key (joserfc). Codes and
refresh tokens are opaque random strings, stored as their SHA-256
(:mod:`kanol_identity.oauth.models`). Nothing here commits: the endpoint does, and an
endpoint that refuses a reused code or refresh token still commits the revocation it
caused (:class:`ReuseDetected`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Table, inspect, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common import outbox
from kanol_common.db import as_utc
from kanol_common.events.identity import AccessTokenRevoked
from kanol_common.logging import get_logger
from kanol_identity import subscriptions
from kanol_identity.errors import InvalidGrant
from kanol_identity.models import Agent, ApiClient, scopes_for_roles, utcnow
from kanol_identity.oauth.models import (
    AuthorizationCode,
    FamilyAccessToken,
    RefreshToken,
    RevokedAccessToken,
    digest,
)
from kanol_identity.settings import IdentitySettings
from kanol_identity.signing import ALGORITHM, SigningKeys

log = get_logger(__name__)

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068: a JWT access token says so in its header
ID_TOKEN_TYPE = "JWT"
# OpenID Connect scopes: they choose claims, they grant no access to a service.
OPENID_SCOPE = "openid"
OIDC_SCOPES: tuple[str, ...] = (OPENID_SCOPE, "profile", "email")
# RFC 7636 verifiers are 43 to 128 characters of this alphabet.
_VERIFIER_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)


class GrantRevoked(InvalidGrant):
    """Refused, and the refusal revoked something: the endpoint commits before answering."""


class ReuseDetected(GrantRevoked):
    """A code or refresh token came back after its use: its family was revoked."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scopes: tuple[str, ...]
    jti: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# -- JWTs ----------------------------------------------------------------------------------


async def issue_access_token(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    *,
    client_id: str,
    subject: str,
    siren: str,
    scopes: Iterable[str],
) -> IssuedToken:
    """An RFC 9068 access token: ``sub`` is the client itself or the agent it acts for."""
    key = await keys.current(session)
    granted = tuple(sorted(set(scopes)))
    now = int(time.time())
    lifetime = settings.access_token_lifetime_seconds
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": subject,
        "client_id": client_id,
        "siren": siren,
        "scope": " ".join(granted),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    log.info(
        "oauth.token_issued",
        tenant=siren,
        client_id=client_id,
        agent_id=None if subject == client_id else subject,
        scopes=list(granted),
        jti=claims["jti"],
        kid=key.kid,
    )
    return IssuedToken(token, lifetime, granted, str(claims["jti"]))


def agent_claims(agent: Agent, scopes: Iterable[str]) -> dict[str, Any]:
    """The OpenID claims of an agent that the scopes release (userinfo and ID token)."""
    granted = set(scopes)
    claims: dict[str, Any] = {"sub": agent.id, "siren": agent.siren, "roles": list(agent.roles)}
    if "profile" in granted:
        claims["name"] = agent.display_name
    if "email" in granted:
        claims["email"] = agent.login
        # The login is the address the organisation's admin registered, not one we checked.
        claims["email_verified"] = False
    return claims


async def issue_id_token(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    *,
    client_id: str,
    agent: Agent,
    scopes: Iterable[str],
    auth_time: datetime,
    nonce: str | None,
    access_token: str,
) -> str:
    key = await keys.current(session)
    now = int(time.time())
    claims = {
        **agent_claims(agent, scopes),
        "iss": settings.token_issuer,
        "aud": client_id,
        "azp": client_id,
        "iat": now,
        "exp": now + settings.id_token_lifetime_seconds,
        "auth_time": int(as_utc(auth_time).timestamp()),
        "at_hash": _left_half_hash(access_token),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ID_TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def _left_half_hash(value: str) -> str:
    """OIDC's at_hash: the left half of the SHA-256 of the token, base64url."""
    half = hashlib.sha256(value.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")


async def read_access_token(
    session: AsyncSession, keys: SigningKeys, settings: IdentitySettings, token: str
) -> dict[str, Any] | None:
    """The claims of a valid access token of ours, or None (bad, expired, revoked)."""
    # An ID token is no access token, even signed by the same key.
    decoded = await _signed_by_us(session, keys, token, ACCESS_TOKEN_TYPE)
    if decoded is None:
        return None

    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.token_issuer},
        aud={"essential": True, "value": settings.token_audience},
        exp={"essential": True},
        jti={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError:
        return None
    if await session.get(RevokedAccessToken, str(decoded.claims["jti"])) is not None:
        return None
    return decoded.claims


async def _signed_by_us(
    session: AsyncSession, keys: SigningKeys, token: str, typ: str
) -> jwt.Token | None:
    """The token decoded, when one of our published keys signed it and its header says
    ``typ``; its claims are not checked yet."""
    try:
        key_set = KeySet.import_key_set(await keys.public_key_set(session))
        decoded = jwt.decode(token, key_set, algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    return decoded if decoded.header.get("typ") == typ else None


async def read_id_token_hint(
    session: AsyncSession, keys: SigningKeys, settings: IdentitySettings, token: str
) -> dict[str, Any] | None:
    """The claims of an ID token we signed, expired or not (a logout's ``id_token_hint``),
    or None when it is not one of ours."""
    decoded = await _signed_by_us(session, keys, token, ID_TOKEN_TYPE)
    if decoded is None:
        return None
    claims = decoded.claims
    if claims.get("iss") != settings.token_issuer:
        return None
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("aud"), str):
        return None
    return claims


async def revoke_access_token(session: AsyncSession, claims: dict[str, Any]) -> None:
    """Revoke the access token of these claims (RFC 7009)."""
    await revoke_access_token_id(
        session,
        jti=str(claims["jti"]),
        client_id=str(claims.get("client_id", claims["sub"])),
        siren=str(claims["siren"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


async def revoke_access_token_id(
    session: AsyncSession, *, jti: str, client_id: str, siren: str, expires_at: datetime
) -> None:
    """Revoke one access token: introspection reads it here, and the services hear of it
    (``AccessTokenRevoked``), since they verify tokens offline."""
    if await session.get(RevokedAccessToken, jti) is not None:
        return
    session.add(
        RevokedAccessToken(jti=jti, client_id=client_id, expires_at=expires_at, revoked_at=utcnow())
    )
    revoked = AccessTokenRevoked(jti=jti, client_id=client_id, siren=siren, expires_at=expires_at)
    outbox.publish(session, revoked, subject=client_id, tenant=siren)
    log.info("oauth.access_token_revoked", jti=jti, client_id=client_id)


def remember_in_family(
    session: AsyncSession, family_id: str, issued: IssuedToken, *, client_id: str, siren: str
) -> None:
    """Keep an agent's access token with its login's family, to be revoked with it."""
    expires_at = utcnow() + timedelta(seconds=issued.expires_in)
    session.add(
        FamilyAccessToken(
            jti=issued.jti,
            family_id=family_id,
            client_id=client_id,
            siren=siren,
            expires_at=expires_at,
        )
    )


# -- authorisation codes (RFC 6749 §4.1, PKCE RFC 7636) -------------------------------------


def pkce_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)), the only method accepted."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def is_valid_challenge(challenge: str) -> bool:
    # A S256 challenge is 43 base64url characters (32 bytes).
    return len(challenge) == 43 and set(challenge) <= _VERIFIER_CHARACTERS - {".", "~"}


async def new_authorization_code(
    session: AsyncSession,
    settings: IdentitySettings,
    *,
    client: ApiClient,
    agent: Agent,
    redirect_uri: str,
    scopes: Iterable[str],
    code_challenge: str,
    nonce: str | None,
    auth_time: datetime,
) -> str:
    code = new_secret()
    now = utcnow()
    session.add(
        AuthorizationCode(
            code_hash=digest(code),
            client_id=client.client_id,
            agent_id=agent.id,
            redirect_uri=redirect_uri,
            scopes=sorted(set(scopes)),
            code_challenge=code_challenge,
            nonce=nonce,
            family_id=str(uuid.uuid4()),
            auth_time=auth_time,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.authorization_code_lifetime_seconds),
        )
    )
    log.info("oauth.code_issued", client_id=client.client_id, agent_id=agent.id)
    return code


async def redeem_code(
    session: AsyncSession,
    *,
    code: str,
    client_id: str,
    redirect_uri: str | None,
    code_verifier: str | None,
) -> AuthorizationCode:
    """The code's grant, spent; every refusal reads as invalid_grant.

    A code spent before is refused and the tokens its first exchange issued are revoked
    (:class:`ReuseDetected`): someone else holds it.
    """
    row = await session.get(AuthorizationCode, digest(code))
    if row is None or row.client_id != client_id:
        raise InvalidGrant("The authorisation code is not valid.")
    if row.used_at is not None:
        await revoke_family(session, row.family_id, reason="code_reused")
        raise ReuseDetected("The authorisation code was already used.")
    if as_utc(row.expires_at) <= utcnow():
        raise InvalidGrant("The authorisation code has expired.")
    if redirect_uri != row.redirect_uri:
        raise InvalidGrant("The redirect_uri differs from the authorisation request's.")
    if not code_verifier or not _is_valid_verifier(code_verifier):
        raise InvalidGrant("A code_verifier of 43 to 128 characters is required (PKCE).")
    if not secrets.compare_digest(pkce_challenge(code_verifier), row.code_challenge):
        raise InvalidGrant("The code_verifier does not match the code_challenge.")

    # Spent by one guarded UPDATE: of two exchanges racing with the same code, one wins.
    if not await _mark_used(session, _table(AuthorizationCode), "code_hash", row.code_hash):
        await revoke_family(session, row.family_id, reason="code_reused")
        raise ReuseDetected("The authorisation code was already used.")
    return row


def _is_valid_verifier(verifier: str) -> bool:
    return 43 <= len(verifier) <= 128 and set(verifier) <= _VERIFIER_CHARACTERS


# -- refresh tokens ------------------------------------------------------------------------


async def new_refresh_token(
    session: AsyncSession,
    settings: IdentitySettings,
    *,
    client_id: str,
    agent_id: str,
    scopes: Iterable[str],
    family_id: str,
    auth_time: datetime,
    family_expires_at: datetime | None = None,
) -> str:
    token = new_secret()
    now = utcnow()
    family_end = family_expires_at or now + timedelta(
        seconds=settings.refresh_family_lifetime_seconds
    )
    expires_at = min(family_end, now + timedelta(seconds=settings.refresh_token_lifetime_seconds))
    session.add(
        RefreshToken(
            token_hash=digest(token),
            family_id=family_id,
            client_id=client_id,
            agent_id=agent_id,
            scopes=sorted(set(scopes)),
            auth_time=auth_time,
            issued_at=now,
            expires_at=expires_at,
            family_expires_at=family_end,
        )
    )
    return token


async def use_refresh_token(session: AsyncSession, token: str, client_id: str) -> RefreshToken:
    """The refresh token's grant, spent so that it cannot be used again.

    A token used before means two parties hold it: the whole family is revoked.
    """
    row = await session.get(RefreshToken, digest(token))
    if row is None or row.client_id != client_id:
        raise InvalidGrant("The refresh token is not valid.")
    if row.revoked_at is not None:
        raise InvalidGrant("The refresh token was revoked.")
    if row.used_at is not None:
        await revoke_family(session, row.family_id, reason="refresh_token_reused")
        raise ReuseDetected("The refresh token was already used; its session is revoked.")
    if as_utc(row.expires_at) <= utcnow():
        raise InvalidGrant("The refresh token has expired.")

    if not await _mark_used(session, _table(RefreshToken), "token_hash", row.token_hash):
        await revoke_family(session, row.family_id, reason="refresh_token_reused")
        raise ReuseDetected("The refresh token was already used; its session is revoked.")
    return row


async def find_refresh_token(session: AsyncSession, token: str) -> RefreshToken | None:
    return await session.get(RefreshToken, digest(token))


def refresh_token_is_active(row: RefreshToken) -> bool:
    return row.used_at is None and row.revoked_at is None and as_utc(row.expires_at) > utcnow()


async def revoke_family(session: AsyncSession, family_id: str, *, reason: str) -> None:
    """Revoke a login's refresh tokens and the access tokens they gave that still live."""
    table = _table(RefreshToken)
    await session.exec(
        update(table)
        .where(table.c.family_id == family_id, table.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    living = await session.exec(
        select(FamilyAccessToken).where(
            FamilyAccessToken.family_id == family_id,
            col(FamilyAccessToken.expires_at) > utcnow(),
        )
    )
    for token in living.all():
        await revoke_access_token_id(
            session,
            jti=token.jti,
            client_id=token.client_id,
            siren=token.siren,
            expires_at=token.expires_at,
        )
    log.warning("oauth.refresh_family_revoked", family_id=family_id, reason=reason)


async def revoke_agent_sessions(session: AsyncSession, agent_id: str) -> None:
    """Revoke every refresh token of an agent (its deactivation, say)."""
    table = _table(RefreshToken)
    await session.exec(
        update(table)
        .where(table.c.agent_id == agent_id, table.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def _mark_used(session: AsyncSession, table: Table, key: str, value: str) -> bool:
    result = await session.exec(
        update(table)
        .where(table.c[key] == value, table.c.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


def _table(model: type[AuthorizationCode] | type[RefreshToken]) -> Table:
    mapper = inspect(model)
    assert mapper is not None
    table: Table = mapper.local_table
    return table


async def agent_scopes(session: AsyncSession, agent: Agent, client: ApiClient) -> set[str]:
    """What a client may get for an agent: the agent's role scopes its organisation's
    subscriptions allow, within the client's registered scopes, and the OpenID scopes."""
    services = await subscriptions.effective_services(session, agent.siren)
    from_roles = set(scopes_for_roles(list(agent.roles), services))
    return (from_roles & set(client.scopes)) | set(OIDC_SCOPES)
