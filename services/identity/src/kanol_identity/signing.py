"""The keys that sign access tokens: created on first start, rotated on demand, published.

Rotation makes a new key current at once and retires the others; a retired key stays in
the JWKS for ``retired_key_grace_seconds`` so the tokens it signed keep verifying until
they expire. Verifiers that meet the new ``kid`` refresh their copy of the JWKS.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from joserfc.jwk import KeySet, KeySetSerialization, RSAKey
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.auth import KeySetVerifier
from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_identity.models import SigningKey, utcnow
from kanol_identity.repository import SigningKeyRepository
from kanol_identity.settings import IdentitySettings

ALGORITHM = "RS256"

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
        cutoff = utcnow() - timedelta(seconds=self.settings.retired_key_grace_seconds)
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


async def rotate(session: AsyncSession, settings: IdentitySettings) -> SigningKey:
    """Make a new key current and retire the others; the caller commits."""
    repository = SigningKeyRepository(session)
    previous = await repository.active()
    row = await create_signing_key(session, settings)

    now = utcnow()
    for old in previous:
        old.retired_at = now
        repository.add(old)
    log.info("signing_key.rotated", kid=row.kid, retired=[old.kid for old in previous])
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
