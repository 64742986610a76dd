"""Secrets, passwords and second factors: the one place where they are made and checked.

Client secrets and agents' passwords are stored only as Argon2id hashes and checked in a
worker thread: Argon2 is slow on purpose (tens of milliseconds, 64 MiB), and the thread
keeps the event loop serving other requests meanwhile. TOTP (RFC 6238) codes are checked
with pyotp, within a window of one time step either side for clocks that drift.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

TOTP_ISSUER = "Kanol"
TOTP_INTERVAL_SECONDS = 30
# One step either side: a code typed just before or after its 30 seconds still counts.
TOTP_WINDOW = 1


def new_client_id(prefix: str = "client") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hasher.hash, secret)


async def secret_matches(secret_hash: str, secret: str) -> bool:
    return await asyncio.to_thread(_verify, secret_hash, secret)


async def hash_password(password: str) -> str:
    """An agent's password as stored: Argon2id, like client secrets."""
    return await hash_secret(password)


async def password_matches(password_hash: str, password: str) -> bool:
    return await secret_matches(password_hash, password)


async def spend_verification_time(secret: str) -> None:
    """Do the work of a verification that cannot succeed.

    Answering an unknown client (or login) as fast as a bad secret is slow would tell an
    attacker which ones exist.
    """
    await asyncio.to_thread(_verify, _decoy_hash(), secret)


def needs_rehash(secret_hash: str) -> bool:
    return _hasher.check_needs_rehash(secret_hash)


def _verify(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(32))


# -- TOTP ----------------------------------------------------------------------------------


def new_totp_secret() -> str:
    """A random base32 secret of 160 bits, as RFC 4226 recommends."""
    return pyotp.random_base32(length=32)


def totp_provisioning_uri(secret: str, login: str, issuer: str = TOTP_ISSUER) -> str:
    """The ``otpauth://`` URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret, interval=TOTP_INTERVAL_SECONDS).provisioning_uri(
        name=login, issuer_name=issuer
    )


def totp_code(secret: str, at: float | None = None) -> str:
    """The code for a moment (now by default); for tests and for the enrolment page."""
    return pyotp.TOTP(secret, interval=TOTP_INTERVAL_SECONDS).at(
        int(time.time() if at is None else at)
    )


def totp_matching_step(
    secret: str, code: str, *, window: int = TOTP_WINDOW, at: float | None = None
) -> int | None:
    """The time step whose code this is, within ``window`` steps of now, or None.

    Callers store the step of the last accepted code (``Agent.totp_last_step``) and refuse a
    step not after it, so an overheard code cannot be replayed.
    """
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None

    totp = pyotp.TOTP(secret, interval=TOTP_INTERVAL_SECONDS)
    now = time.time() if at is None else at
    current = int(now) // TOTP_INTERVAL_SECONDS
    for step in range(current - window, current + window + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def totp_verify(
    secret: str, code: str, *, last_step: int | None = None, window: int = TOTP_WINDOW
) -> int | None:
    """The step of a valid, not yet used code (store it as the new last step), or None."""
    step = totp_matching_step(secret, code, window=window)
    if step is None:
        return None
    if last_step is not None and step <= last_step:
        return None
    return step
