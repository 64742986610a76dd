"""Client authentication at the token, revocation and introspection endpoints.

Three methods: ``client_secret_basic`` and ``client_secret_post`` (the secret checked
against its Argon2id hash) and ``private_key_jwt`` (RFC 7523: a JWT the client signs with
its private key, checked against the public keys registered for it; ``iss`` and ``sub`` are
its client_id, ``aud`` the token endpoint, ``exp`` near, ``jti`` never seen before).
Failures count in the throttle under the client id and the caller's address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from fastapi import Request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_identity import credentials
from kanol_identity.errors import InvalidClient, InvalidRequest
from kanol_identity.models import ApiClient, ClientAuthMethod
from kanol_identity.oauth.models import ClientAssertionUse
from kanol_identity.repository import ApiClientRepository
from kanol_identity.settings import IdentitySettings
from kanol_identity.throttle import Throttle, address_key, client_key

log = get_logger(__name__)

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
# An assertion is meant for one request: it may not claim to live longer than this.
MAX_ASSERTION_LIFETIME_SECONDS = 300
ASSERTION_LEEWAY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class PresentedCredentials:
    client_id: str
    method: str
    secret: str | None = None
    assertion: str | None = None


def token_endpoint_url(settings: IdentitySettings) -> str:
    return f"{settings.token_issuer.rstrip('/')}/oauth/token"


def presented_credentials(request: Request, form: FormData) -> PresentedCredentials:
    """What the client presented, by exactly one method."""
    basic = _basic_credentials(request.headers.get("authorization"))
    posted_id = _text(form.get("client_id"))
    posted_secret = _text(form.get("client_secret"))
    assertion = _text(form.get("client_assertion"))
    assertion_type = _text(form.get("client_assertion_type"))

    used = [basic is not None, posted_secret is not None, assertion is not None]
    if sum(used) > 1:
        raise InvalidRequest("Use one client authentication method, not two.")
    if basic is not None:
        if posted_id and posted_id != basic[0]:
            raise InvalidRequest("The client_id differs from the Basic credentials' one.")
        return PresentedCredentials(basic[0], "client_secret_basic", secret=basic[1])
    if posted_id and posted_secret:
        return PresentedCredentials(posted_id, "client_secret_post", secret=posted_secret)
    if assertion is not None:
        if assertion_type != CLIENT_ASSERTION_TYPE:
            raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}.")
        issuer = _assertion_issuer(assertion)
        if posted_id and posted_id != issuer:
            raise InvalidClient("The client_id differs from the assertion's issuer.")
        return PresentedCredentials(issuer, "private_key_jwt", assertion=assertion)
    raise InvalidClient(
        "Client authentication is required (client_secret_basic, client_secret_post "
        "or private_key_jwt)."
    )


async def authenticate(request: Request, session: AsyncSession, form: FormData) -> ApiClient:
    """The authenticated, unrevoked client of the request; throttled per client and address."""
    presented = presented_credentials(request, form)
    settings: IdentitySettings = request.app.state.settings
    throttle: Throttle = request.app.state.throttle
    keys = [client_key(presented.client_id), address_key(_address(request))]
    on_record = await throttle.check(keys, session)

    try:
        client = await _verify(request.app.state.runtime.database, session, settings, presented)
    except InvalidClient:
        await throttle.failed(keys)
        raise
    await throttle.succeeded(keys[:1], on_record)
    return client


async def _verify(
    database: Database,
    session: AsyncSession,
    settings: IdentitySettings,
    presented: PresentedCredentials,
) -> ApiClient:
    client = await ApiClientRepository(session).get_by_client_id(presented.client_id)
    if presented.secret is not None:
        await _check_secret(session, client, presented)
    else:
        _check_assertion(settings, client, presented)
        await _spend_jti(database, presented)
    assert client is not None  # both checks refuse an unknown client

    if client.is_revoked:
        log.info("oauth.client_refused", client_id=client.client_id, reason="revoked")
        raise InvalidClient("Client authentication failed.")
    return client


async def _check_secret(
    session: AsyncSession, client: ApiClient | None, presented: PresentedCredentials
) -> None:
    secret = presented.secret or ""
    if client is None or client.secret_hash is None:
        # Unknown clients cost the same time as known ones, so timing tells nothing.
        await credentials.spend_verification_time(secret)
        log.info("oauth.client_refused", client_id=presented.client_id, reason="unknown")
        raise InvalidClient("Client authentication failed.")
    if client.auth_method != ClientAuthMethod.CLIENT_SECRET:
        log.info("oauth.client_refused", client_id=client.client_id, reason="wrong_method")
        raise InvalidClient("Client authentication failed.")
    if _recently_verified.holds(client.client_id, client.secret_hash, secret):
        return
    if not await credentials.secret_matches(client.secret_hash, secret):
        log.info("oauth.client_refused", client_id=client.client_id, reason="bad_secret")
        raise InvalidClient("Client authentication failed.")

    _recently_verified.remember(client.client_id, client.secret_hash, secret)
    if credentials.needs_rehash(client.secret_hash):
        # The hashing parameters were strengthened since this secret was stored.
        client.secret_hash = await credentials.hash_secret(secret)
        session.add(client)


class VerifiedSecrets:
    """Secrets this replica verified lately, so a client asking again skips Argon2id.

    Argon2id costs tens of milliseconds and 64 MiB per check, on purpose; a client that
    asks for tokens often would pay it every time. An entry is the SHA-256 of the client id,
    of the stored hash and of the secret presented: a rotated secret (another stored hash)
    or another secret finds no entry, and a revoked client is refused after this check all
    the same. The memory holds digests of 256-bit random secrets, which reveal nothing.
    """

    def __init__(self, ttl_seconds: float = 300.0, size: int = 4096) -> None:
        self._ttl = ttl_seconds
        self._size = size
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def _key(client_id: str, secret_hash: str, secret: str) -> bytes:
        material = "\x00".join((client_id, secret_hash, secret)).encode("utf-8")
        return hashlib.sha256(material).digest()

    def holds(self, client_id: str, secret_hash: str, secret: str) -> bool:
        key = self._key(client_id, secret_hash, secret)
        until = self._entries.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            self._entries.pop(key, None)
            return False
        return True

    def remember(self, client_id: str, secret_hash: str, secret: str) -> None:
        key = self._key(client_id, secret_hash, secret)
        self._entries[key] = time.monotonic() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


_recently_verified = VerifiedSecrets()


def _check_assertion(
    settings: IdentitySettings, client: ApiClient | None, presented: PresentedCredentials
) -> None:
    if client is None or client.auth_method != ClientAuthMethod.PRIVATE_KEY_JWT or not client.jwks:
        log.info("oauth.client_refused", client_id=presented.client_id, reason="no_client_key")
        raise InvalidClient("Client authentication failed.")

    try:
        key_set = KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        decoded = jwt.decode(presented.assertion or "", key_set, algorithms=ASSERTION_ALGORITHMS)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        log.info("oauth.client_refused", client_id=client.client_id, reason="bad_assertion")
        raise InvalidClient("The client assertion's signature cannot be verified.") from exc

    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        None,
        ASSERTION_LEEWAY_SECONDS,
        iss={"essential": True, "value": client.client_id},
        sub={"essential": True, "value": client.client_id},
        aud={"essential": True, "value": token_endpoint_url(settings)},
        exp={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        log.info("oauth.client_refused", client_id=client.client_id, reason="bad_assertion")
        raise InvalidClient(f"The client assertion is not acceptable: {exc}") from exc
    if int(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME_SECONDS:
        raise InvalidClient("The client assertion lives too long (at most 5 minutes).")


async def _spend_jti(database: Database, presented: PresentedCredentials) -> None:
    """Record the assertion's jti in its own transaction: a second use is a replay."""
    claims = _unverified_claims(presented.assertion or "")
    use = ClientAssertionUse(
        client_id=presented.client_id,
        jti=str(claims["jti"])[:255],
        expires_at=datetime.fromtimestamp(int(claims["exp"]) + ASSERTION_LEEWAY_SECONDS, UTC),
    )
    try:
        async with database.session() as own:
            own.add(use)
            await own.commit()
    except IntegrityError as exc:
        log.warning("oauth.client_assertion_replayed", client_id=presented.client_id)
        raise InvalidClient("The client assertion was already used (jti).") from exc


def _assertion_issuer(assertion: str) -> str:
    issuer = _unverified_claims(assertion).get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidClient("The client assertion names no issuer.")
    return issuer


def _unverified_claims(assertion: str) -> dict[str, Any]:
    """The claims before the signature is checked: only to find which client's keys to use."""
    try:
        claims = json.loads(jws.extract_compact(assertion.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise InvalidClient("The client assertion is not a JWT.") from exc
    if not isinstance(claims, dict):
        raise InvalidClient("The client assertion is not a JWT.")
    return claims


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


def _address(request: Request) -> str | None:
    # Behind a proxy, uvicorn's --proxy-headers (with --forwarded-allow-ips) sets this right.
    return request.client.host if request.client else None


def client_address(request: Request) -> str | None:
    return _address(request)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
