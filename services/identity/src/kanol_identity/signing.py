"""The keys that sign tokens: created on first start, rotated on demand or by age, published.

Rotation makes a new key current at once and retires the others. A retired key stays in
the JWKS until the last token it signed has expired (the longest token lifetime plus the
verifiers' leeway, and at least ``retired_key_grace_seconds``), then it is deleted with
its private part. Verifiers that meet the new ``kid`` refresh their copy of the JWKS.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from joserfc.jwk import KeySet, KeySetSerialization, RSAKey
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.auth import KeySetVerifier
from kanol_common.db import Database, as_utc
from kanol_common.logging import get_logger
from kanol_identity.models import SigningKey, utcnow
from kanol_identity.repository import SigningKeyRepository
from kanol_identity.settings import IdentitySettings

ALGORITHM = "RS256"
# Verifiers accept a token this long after its expiry (kanol_common.auth's leeway), plus
# the JWKS cache's own age: a retired key stays published that much longer.
VERIFIER_MARGIN_SECONDS = 120

log = get_logger(__name__)


class NoSigningKey(RuntimeError):
    """No key can sign: the service started without creating one."""


class SigningKeys:
    """Signs with the current key and publishes the live public keys.

    The current key is looked up in the database on every use, so a rotation made by another
    process (``rotate-keys``) takes effect at once; parsed keys are cached by ``kid``.
    """

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self._parsed: dict[str, RSAKey] = {}

    async def current(self, session: AsyncSession) -> RSAKey:
        row = await SigningKeyRepository(session).current()
        if row is None:
            raise NoSigningKey("No signing key exists; start the service or run rotate-keys")
        return self._parse(row)

    async def public_key_set(self, session: AsyncSession) -> KeySetSerialization:
        cutoff = utcnow() - timedelta(seconds=published_after_retirement(self.settings))
        rows = await SigningKeyRepository(session).published(retired_after=cutoff)
        keys = [self._parse(row).as_dict(private=False, alg=row.algorithm) for row in rows]
        return {"keys": keys}

    def _parse(self, row: SigningKey) -> RSAKey:
        key = self._parsed.get(row.kid)
        if key is None:
            key = RSAKey.import_key(row.private_jwk)
            self._parsed[row.kid] = key
        return key


async def create_signing_key(session: AsyncSession, settings: IdentitySettings) -> SigningKey:
    """A new current key; the caller commits. Older keys are retired by :func:`rotate`."""
    # Generating an RSA key takes long enough to stall the event loop.
    key = await asyncio.to_thread(
        RSAKey.generate_key, settings.signing_key_bits, {"use": "sig"}, True, False
    )
    kid = key.thumbprint()
    row = SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        private_jwk={**key.as_dict(private=True), "kid": kid},
        created_at=utcnow(),
    )
    SigningKeyRepository(session).add(row)
    return row


async def ensure_signing_key(database: Database, settings: IdentitySettings) -> None:
    """Create the first signing key when there is none (first start of a fresh database)."""
    async with database.session() as session:
        if await SigningKeyRepository(session).current() is not None:
            return

        row = await create_signing_key(session, settings)
        await session.commit()
        log.info("signing_key.created", kid=row.kid)


def published_after_retirement(settings: IdentitySettings) -> int:
    """Seconds a retired key stays in the JWKS: until every token it signed has expired."""
    longest = max(settings.access_token_lifetime_seconds, settings.id_token_lifetime_seconds)
    return max(settings.retired_key_grace_seconds, longest + VERIFIER_MARGIN_SECONDS)


async def rotate(session: AsyncSession, settings: IdentitySettings) -> SigningKey:
    """Make a new key current, retire the others, delete the long retired; caller commits."""
    repository = SigningKeyRepository(session)
    previous = await repository.active()
    row = await create_signing_key(session, settings)

    now = utcnow()
    for old in previous:
        old.retired_at = now
        repository.add(old)
    deleted = await delete_expired_keys(session, settings)
    log.info(
        "signing_key.rotated",
        kid=row.kid,
        retired=[old.kid for old in previous],
        deleted=deleted,
    )
    return row


async def delete_expired_keys(session: AsyncSession, settings: IdentitySettings) -> list[str]:
    """Delete the keys retired long enough that no token they signed can still verify."""
    cutoff = utcnow() - timedelta(seconds=published_after_retirement(settings))
    result = await session.exec(
        select(SigningKey).where(
            col(SigningKey.retired_at).is_not(None), col(SigningKey.retired_at) <= cutoff
        )
    )
    expired = list(result.all())
    for key in expired:
        await session.delete(key)
    return [key.kid for key in expired]


async def rotate_if_old(database: Database, settings: IdentitySettings) -> SigningKey | None:
    """Rotate when the current key is older than ``signing_key_max_age_seconds`` (0: never).

    Two replicas deciding at the same moment each make a key; both stay published and the
    newest signs, so the race costs one spare key, not a failed verification.
    """
    max_age = settings.signing_key_max_age_seconds
    if max_age <= 0:
        return None

    async with database.session() as session:
        current = await SigningKeyRepository(session).current()
        if current is not None and utcnow() - as_utc(current.created_at) < timedelta(
            seconds=max_age
        ):
            return None
        row = await rotate(session, settings)
        await session.commit()
    return row


class LocalKeysVerifier(KeySetVerifier):
    """identity checks the tokens of its own admin API against its database, not over HTTP."""

    def __init__(self, database: Database, keys: SigningKeys) -> None:
        super().__init__(issuer=keys.settings.token_issuer, audience=keys.settings.token_audience)
        self._database = database
        self._keys = keys

    async def key_set_for(self, kid: str) -> KeySet:
        async with self._database.session() as session:
            return KeySet.import_key_set(await self._keys.public_key_set(session))
