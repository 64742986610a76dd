"""Bearer tokens: verifying identity's JWTs on every service, and fetching one as a service.

Every service checks the access tokens identity signs: the signature against identity's
published key set (JWKS), the issuer, the audience, the lifetime and the claims Kanol relies
on. ``require_scopes`` turns that into a FastAPI dependency that yields the :class:`Caller`.
Services calling each other get their own token with :class:`ServiceTokenProvider`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet, KeySetSerialization
from joserfc.jwt import ClaimsOption

from kanol_common.errors import Forbidden, ServiceUnavailable, Unauthorized
from kanol_common.logging import get_logger
from kanol_common.settings import CommonSettings

log = get_logger(__name__)

# An explicit allow-list: "none", the HMAC family (whose "key" would be the public JWK)
# and anything else a forger might put in the header are refused before any key is used.
ALLOWED_ALGORITHMS: frozenset[str] = frozenset({"RS256", "ES256"})
REQUIRED_CLAIMS: tuple[str, ...] = ("sub", "siren", "scope", "exp", "jti")
DEFAULT_LEEWAY_SECONDS = 30
_STALE_RETRY_SECONDS = 30.0

HttpClientFactory = Callable[[], httpx.AsyncClient]


class InvalidToken(Exception):
    """A token that must not be accepted; the message says why, for the caller to read."""


class KeySetUnavailable(Exception):
    """Identity's key set could not be fetched, so no token can be checked right now."""


class TokenRequestError(Exception):
    """Identity refused (or could not answer) a client credentials request."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an API client acting for one organisation, with its granted scopes."""

    client_id: str
    siren: str
    scopes: frozenset[str]
    token_id: str
    # The agent the client acts for, or the client itself (the token's ``sub``), and when
    # the token was issued (``iat``, seconds since the epoch; 0 when the token does not say).
    subject: str = ""
    issued_at: float = 0.0

    def has_scopes(self, *scopes: str) -> bool:
        return set(scopes) <= self.scopes


class Revocations(Protocol):
    """The clients and agents cut off since their tokens were issued (see
    :mod:`kanol_common.revocations`), when the app holds them as ``app.state.revocations``."""

    async def revoked(self, caller: Caller) -> str | None: ...


@runtime_checkable
class TokenVerifier(Protocol):
    """Checks a bearer token and says who it belongs to, or raises :class:`InvalidToken`."""

    async def verify(self, token: str) -> Caller: ...


def _default_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0))


_VERIFIED_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    key_set: KeySet
    valid_until: float


class KeySetVerifier:
    """The checks every verifier makes; subclasses say where the public keys come from.

    ``key_set_for(kid)`` returns the key set in which to look for the token's key; it may
    refresh its cache when ``kid`` is not in it.
    """

    def __init__(self, *, issuer: str, audience: str, leeway: int = DEFAULT_LEEWAY_SECONDS) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        # Tokens already verified, by their exact text: a client sends the same token with
        # every request, and checking its signature again would find the same answer.
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    async def key_set_for(self, kid: str) -> KeySet:
        raise NotImplementedError

    async def verify(self, token: str) -> Caller:
        """The caller of a valid token; raises :class:`InvalidToken` saying what is wrong."""
        header = _read_header(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"The token's signing algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token does not name its signing key (kid)")

        key_set = await self.key_set_for(kid)
        if not _holds(key_set, kid):
            raise InvalidToken("The token's signing key is unknown")

        cached = self._verified.get(token)
        if cached is not None and cached.key_set is key_set and time.time() < cached.valid_until:
            return cached.caller

        claims = self._decode(token, key_set, alg)
        caller = _caller_from(claims)
        self._remember(token, _Verified(caller, key_set, float(claims["exp"]) + self.leeway))
        return caller

    def _remember(self, token: str, verified: _Verified) -> None:
        """Keep a verified token while its key set is the current one and it has not expired.

        A verdict is reused only under the same key set object, so a refreshed key set (a
        key rotated out) verifies every token again; expiry is checked as the claims check
        does, with the same leeway. Bounded, oldest out first.
        """
        self._verified[token] = verified
        self._verified.move_to_end(token)
        while len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def _decode(self, token: str, key_set: KeySet, alg: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, key_set, algorithms=[alg])
        except BadSignatureError as exc:
            raise InvalidToken("The token's signature is invalid") from exc
        except JoseError as exc:
            raise InvalidToken("The token cannot be read") from exc

        options: dict[str, ClaimsOption] = {name: {"essential": True} for name in REQUIRED_CLAIMS}
        options["iss"] = {"essential": True, "value": self.issuer}
        options["aud"] = {"essential": True, "value": self.audience}
        registry = jwt.JWTClaimsRegistry(None, self.leeway, **options)
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError as exc:
            raise InvalidToken("The token has expired") from exc
        except MissingClaimError as exc:
            raise InvalidToken(f"The token lacks required claims: {exc.claim}") from exc
        except InvalidClaimError as exc:
            raise InvalidToken(_invalid_claim_detail(exc.claim)) from exc
        return decoded.claims


class StaticJwksVerifier(KeySetVerifier):
    """Verifies against a fixed key set; for tests and for identity checking its own tokens."""

    def __init__(
        self,
        jwks: KeySetSerialization | Mapping[str, Any],
        *,
        issuer: str,
        audience: str,
        leeway: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        super().__init__(issuer=issuer, audience=audience, leeway=leeway)
        self.key_set = _import_public_key_set(jwks)

    async def key_set_for(self, kid: str) -> KeySet:
        return self.key_set


class JwksVerifier(KeySetVerifier):
    """Verifies against identity's JWKS, fetched over HTTP and cached.

    The key set is fetched on first use and again after ``max_age`` seconds. A token naming
    a key the cache does not hold triggers one refresh (identity may have rotated), but a
    given unknown ``kid`` refreshes at most once per ``unknown_kid_interval`` seconds and
    any refresh waits ``min_refresh_interval`` after the previous one, so forged ``kid``
    values cannot turn every request into a call to identity.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        http_client: HttpClientFactory = _default_http_client,
        leeway: int = DEFAULT_LEEWAY_SECONDS,
        max_age: float = 300.0,
        unknown_kid_interval: float = 10.0,
        min_refresh_interval: float = 1.0,
    ) -> None:
        super().__init__(issuer=issuer, audience=audience, leeway=leeway)
        self.jwks_url = jwks_url
        self._http_client = http_client
        self._max_age = max_age
        self._unknown_kid_interval = unknown_kid_interval
        self._min_refresh_interval = min_refresh_interval
        self._key_set: KeySet | None = None
        self._fetched_at = 0.0
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()
        # Bounded, so a stream of random kids cannot grow it without limit.
        self._unknown_kid_tries: OrderedDict[str, float] = OrderedDict()

    async def key_set_for(self, kid: str) -> KeySet:
        # The common case takes no lock, so a slow refresh does not hold up known keys.
        cached = self._key_set
        if cached is not None and self._is_fresh() and _holds(cached, kid):
            return cached

        async with self._lock:
            now = time.monotonic()
            if self._key_set is None and now - self._failed_at < self._min_refresh_interval:
                raise KeySetUnavailable(f"The key set at {self.jwks_url} failed just now")
            if self._key_set is None or not self._is_fresh():
                await self._refresh(keep_stale=self._key_set is not None)
            elif not _holds(self._key_set, kid) and self._may_refresh_for(kid, now):
                log.info("auth.jwks_unknown_kid", kid=kid)
                await self._refresh(keep_stale=True)

            assert self._key_set is not None
            return self._key_set

    def _is_fresh(self) -> bool:
        return time.monotonic() - self._fetched_at <= self._max_age

    def _may_refresh_for(self, kid: str, now: float) -> bool:
        if now - self._fetched_at < self._min_refresh_interval:
            return False
        last_try = self._unknown_kid_tries.get(kid)
        if last_try is not None and now - last_try < self._unknown_kid_interval:
            return False

        self._unknown_kid_tries[kid] = now
        self._unknown_kid_tries.move_to_end(kid)
        while len(self._unknown_kid_tries) > 1024:
            self._unknown_kid_tries.popitem(last=False)
        return True

    async def _refresh(self, *, keep_stale: bool) -> None:
        try:
            async with self._http_client() as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                key_set = _import_public_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError, KeyError, TypeError) as exc:
            self._failed_at = time.monotonic()
            if not keep_stale:
                raise KeySetUnavailable(f"Cannot fetch the key set at {self.jwks_url}") from exc

            # The stale key set still verifies tokens signed before any rotation; refusing
            # every request because identity blinked would be worse. Try again in a while.
            log.warning("auth.jwks_refresh_failed", url=self.jwks_url, error=str(exc))
            retry_in = min(_STALE_RETRY_SECONDS, self._max_age)
            self._fetched_at = self._failed_at - self._max_age + retry_in
            return

        self._key_set = key_set
        self._fetched_at = time.monotonic()
        log.info("auth.jwks_fetched", url=self.jwks_url, kids=[key.kid for key in key_set])


def _holds(key_set: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in key_set)


def _import_public_key_set(jwks: KeySetSerialization | Mapping[str, Any]) -> KeySet:
    keys = [key for key in jwks["keys"] if key.get("kid")]
    key_set = KeySet.import_key_set({"keys": keys})
    if any(key.is_private for key in key_set):
        # A verifier never needs a private key; holding one is a configuration accident.
        key_set = KeySet.import_key_set(key_set.as_dict(private=False))
    return key_set


def _read_header(token: str) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, UnicodeError, ValueError) as exc:
        raise InvalidToken("The token is not a well-formed JWT") from exc
    return header


def _invalid_claim_detail(claim: str) -> str:
    details = {
        "iss": "The token was not issued by the expected identity service",
        "aud": "The token is not meant for this audience",
        "nbf": "The token is not valid yet",
        "iat": "The token was issued in the future",
    }
    return details.get(claim, f"The token's {claim!r} claim is invalid")


def _caller_from(claims: Mapping[str, Any]) -> Caller:
    scope = claims["scope"]
    siren = claims["siren"]
    if not isinstance(scope, str) or not isinstance(siren, str):
        raise InvalidToken("The token's scope and siren claims must be strings")
    client_id = claims.get("client_id", claims["sub"])
    issued_at = claims.get("iat", 0)
    return Caller(
        client_id=str(client_id),
        siren=siren,
        scopes=frozenset(scope.split()),
        token_id=str(claims["jti"]),
        subject=str(claims["sub"]),
        issued_at=float(issued_at) if isinstance(issued_at, int | float) else 0.0,
    )


def verifier_from_settings(settings: CommonSettings) -> JwksVerifier:
    return JwksVerifier(
        settings.resolved_jwks_url(),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
    )


def _app_verifier(request: Request) -> TokenVerifier:
    state = request.app.state
    verifier: TokenVerifier | None = getattr(state, "token_verifier", None)
    if verifier is None:
        verifier = verifier_from_settings(state.settings)
        state.token_verifier = verifier
    return verifier


_bearer = HTTPBearer(auto_error=False, description="An access token issued by Kanol identity")


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the caller of a valid bearer token holding every given scope.

    ``caller: Annotated[Caller, Depends(require_scopes("actes:write"))]``
    """
    required = frozenset(scopes)

    async def caller_with_scopes(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Caller:
        if credentials is None:
            raise Unauthorized("A bearer token is required (Authorization: Bearer <token>)")

        try:
            caller = await _app_verifier(request).verify(credentials.credentials)
        except InvalidToken as exc:
            raise Unauthorized(str(exc)) from exc
        except KeySetUnavailable as exc:
            log.error("auth.jwks_unavailable", error=str(exc))
            raise ServiceUnavailable("The signing keys of identity cannot be fetched") from exc

        revocations: Revocations | None = getattr(request.app.state, "revocations", None)
        if revocations is not None and (reason := await revocations.revoked(caller)):
            log.warning("auth.token_of_revoked", client_id=caller.client_id, tenant=caller.siren)
            raise Unauthorized(reason)

        structlog.contextvars.bind_contextvars(tenant=caller.siren, client_id=caller.client_id)
        missing = sorted(required - caller.scopes)
        if missing:
            raise Forbidden(
                f"The token lacks the scopes this operation requires: {' '.join(missing)}",
                missing_scopes=missing,
            )
        return caller

    return caller_with_scopes


class ServiceTokenProvider:
    """A service's own access token, by client credentials at identity, cached until near expiry.

    The client authenticates with HTTP Basic (``client_secret_basic``) by default, or in the
    form body with ``auth_method="client_secret_post"``.
    """

    def __init__(
        self,
        settings: CommonSettings,
        client_id: str,
        client_secret: str,
        scopes: Iterable[str] | str,
        *,
        auth_method: str = "client_secret_basic",
        refresh_margin: float = 30.0,
        http_client: HttpClientFactory = _default_http_client,
    ) -> None:
        if auth_method not in {"client_secret_basic", "client_secret_post"}:
            raise ValueError(f"Unsupported client authentication method: {auth_method}")
        self.token_url = f"{settings.identity_url.rstrip('/')}/oauth/token"
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        self._auth_method = auth_method
        self._refresh_margin = refresh_margin
        self._http_client = http_client
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token

            self._token, expires_in = await self._request()
            self._renew_at = time.monotonic() + max(expires_in - self._refresh_margin, 0.0)
            return self._token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    def invalidate(self) -> None:
        """Forget the cached token, e.g. after a service answered 401 with it."""
        self._token = None

    async def _request(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "scope": " ".join(self.scopes)}
        headers = {"Accept": "application/json"}
        if self._auth_method == "client_secret_post":
            form.update(client_id=self.client_id, client_secret=self._client_secret)
        else:
            headers["Authorization"] = _basic_credentials(self.client_id, self._client_secret)

        try:
            async with self._http_client() as client:
                response = await client.post(self.token_url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise TokenRequestError(f"Cannot reach identity at {self.token_url}: {exc}") from exc

        body = _json_or_empty(response)
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error", f"HTTP {response.status_code}")
            description = body.get("error_description", "")
            raise TokenRequestError(
                f"identity refused a token to {self.client_id}: {error} {description}".strip()
            )

        log.info("auth.service_token_obtained", client_id=self.client_id)
        return str(body["access_token"]), float(body.get("expires_in", 60))


def _basic_credentials(client_id: str, client_secret: str) -> str:
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined and encoded.
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
