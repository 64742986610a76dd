"""Client secrets: generated at random, stored only as Argon2id hashes, checked in a thread.

Argon2 is slow on purpose (tens of milliseconds, 64 MiB); running it in a worker thread
keeps the event loop serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def new_client_id(prefix: str = "client") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hasher.hash, secret)


async def secret_matches(secret_hash: str, secret: str) -> bool:
    return await asyncio.to_thread(_verify, secret_hash, secret)


async def spend_verification_time(secret: str) -> None:
    """Do the work of a verification that cannot succeed.

    Answering an unknown client as fast as a bad secret is slow would tell an attacker
    which client ids exist.
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
