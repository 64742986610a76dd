"""identity's periodic chores: rotate the signing key by age, delete what has expired.

One loop per replica, every ``housekeeping_interval_seconds``. Each chore is idempotent
and safe to run on several replicas at once: deletes of expired rows, and a rotation whose
race costs at most one spare key (see :func:`kanol_identity.signing.rotate_if_old`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import col

from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_identity import signing
from kanol_identity.models import utcnow
from kanol_identity.oauth.models import (
    AuthorizationCode,
    ClientAssertionUse,
    FamilyAccessToken,
    LoginSession,
    RefreshToken,
    RevokedAccessToken,
)
from kanol_identity.settings import IdentitySettings
from kanol_identity.throttle import Throttle

log = get_logger(__name__)

# Expired rows are kept a day, so a reused code or token is still recognised as such (and
# revokes its family) rather than read as unknown, for a while after its expiry.
KEEP_EXPIRED = timedelta(days=1)


async def purge_expired(database: Database) -> dict[str, int]:
    """Delete codes, refresh tokens, revocations, assertions and sessions past their use."""
    cutoff = utcnow() - KEEP_EXPIRED
    statements = {
        "authorization_code": delete(AuthorizationCode).where(
            col(AuthorizationCode.expires_at) < cutoff
        ),
        "refresh_token": delete(RefreshToken).where(col(RefreshToken.family_expires_at) < cutoff),
        "family_access_token": delete(FamilyAccessToken).where(
            col(FamilyAccessToken.expires_at) < utcnow()
        ),
        "revoked_access_token": delete(RevokedAccessToken).where(
            col(RevokedAccessToken.expires_at) < utcnow()
        ),
        "client_assertion_use": delete(ClientAssertionUse).where(
            col(ClientAssertionUse.expires_at) < utcnow()
        ),
        "login_session": delete(LoginSession).where(col(LoginSession.expires_at) < utcnow()),
    }
    deleted: dict[str, int] = {}
    async with database.session() as session:
        for table, statement in statements.items():
            result = await session.exec(statement)
            deleted[table] = int(getattr(result, "rowcount", 0) or 0)
        await session.commit()
    return deleted


async def run_once(database: Database, settings: IdentitySettings) -> None:
    rotated = await signing.rotate_if_old(database, settings)
    if rotated is not None:
        log.info("signing_key.rotated_by_age", kid=rotated.kid)
    deleted = await purge_expired(database)
    deleted["throttle"] = await Throttle(database, settings).purge()
    if any(deleted.values()):
        log.info("housekeeping.purged", **deleted)


async def run_forever(database: Database, settings: IdentitySettings) -> None:
    while True:
        try:
            await run_once(database, settings)
        except Exception:  # a failed round is logged and tried again next time
            log.exception("housekeeping.failed")
        await asyncio.sleep(settings.housekeeping_interval_seconds)
