"""Signing keys: rotation publishes the old key until its last token expired, then deletes it;
automatic rotation by age."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlmodel import col, select

from kanol_common.auth import InvalidToken, StaticJwksVerifier
from kanol_identity import signing
from kanol_identity.models import SigningKey, utcnow
from kanol_identity.testing import BASE_URL, Identity


async def _published_kids(identity: Identity) -> set[str]:
    keys = (await identity.http.get("/.well-known/jwks.json")).json()["keys"]
    return {key["kid"] for key in keys}


async def _age_retirements(identity: Identity, seconds: int) -> None:
    async with identity.app.state.runtime.database.session() as session:
        for key in (await session.exec(select(SigningKey))).all():
            if key.retired_at is not None:
                key.retired_at = utcnow() - timedelta(seconds=seconds)
                session.add(key)
        await session.commit()


def test_a_retired_key_is_published_as_long_as_its_tokens_live(identity: Identity) -> None:
    settings = identity.settings

    grace = signing.published_after_retirement(settings)

    longest = max(settings.access_token_lifetime_seconds, settings.id_token_lifetime_seconds)
    assert grace >= longest + signing.VERIFIER_MARGIN_SECONDS
    longer = settings.model_copy(update={"access_token_lifetime_seconds": 7200})
    assert signing.published_after_retirement(longer) >= 7200 + signing.VERIFIER_MARGIN_SECONDS


async def test_rotation_keeps_then_deletes_the_old_key(identity: Identity) -> None:
    _, client_id, secret = await identity.add_client("actes:read")
    before = await identity.token(client_id, secret)
    old_kid = kid_of(before)
    database = identity.app.state.runtime.database

    async with database.session() as session:
        new = await signing.rotate(session, identity.settings)
        await session.commit()

    after = await identity.token(client_id, secret)
    assert kid_of(after) == new.kid
    assert {old_kid, new.kid} <= await _published_kids(identity)
    verifier = StaticJwksVerifier(
        (await identity.http.get("/.well-known/jwks.json")).json(),
        issuer=BASE_URL,
        audience=identity.settings.token_audience,
    )
    assert (await verifier.verify(before)).client_id == client_id

    # Once every token the old key signed has expired, it leaves the JWKS...
    await _age_retirements(identity, signing.published_after_retirement(identity.settings) + 1)
    assert old_kid not in await _published_kids(identity)
    late = StaticJwksVerifier(
        (await identity.http.get("/.well-known/jwks.json")).json(),
        issuer=BASE_URL,
        audience=identity.settings.token_audience,
    )
    with pytest.raises(InvalidToken, match="unknown"):
        await late.verify(before)
    # ...and the next rotation deletes it, private part and all.
    async with database.session() as session:
        await signing.rotate(session, identity.settings)
        await session.commit()
    async with database.session() as session:
        assert await session.get(SigningKey, old_kid) is None


async def test_rotation_by_age(identity: Identity) -> None:
    database = identity.app.state.runtime.database
    never = identity.settings.model_copy(update={"signing_key_max_age_seconds": 0})
    young = identity.settings.model_copy(update={"signing_key_max_age_seconds": 3600})
    old = identity.settings.model_copy(update={"signing_key_max_age_seconds": 1})
    async with database.session() as session:
        current = (
            await session.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None)))
        ).all()
        for key in current:
            key.created_at = utcnow() - timedelta(seconds=10)
            session.add(key)
        await session.commit()

    assert await signing.rotate_if_old(database, never) is None
    assert await signing.rotate_if_old(database, young) is None
    rotated = await signing.rotate_if_old(database, old)

    assert rotated is not None
    assert rotated.kid in await _published_kids(identity)


def kid_of(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return str(header["kid"])
