"""The periodic chores: expired codes, tokens, sessions and throttle entries are deleted,
live ones kept; an old signing key is rotated."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from kanol_identity import housekeeping
from kanol_identity.models import SigningKey, utcnow
from kanol_identity.oauth.models import LoginSession, RefreshToken, digest
from kanol_identity.oauth.testing import WebApp, authorize_params, pkce_pair
from kanol_identity.testing import Identity


async def test_deletes_what_expired_and_keeps_what_lives(identity: Identity) -> None:
    web = await WebApp.create(identity)
    agent = await web.agent()
    old = await web.tokens(agent)
    live = await web.tokens(agent)
    _, challenge = pkce_pair()
    async with web.browser() as browser:
        await browser.get("/oauth/authorize", params=authorize_params(web.client_id, challenge))
    long_ago = utcnow() - housekeeping.KEEP_EXPIRED - timedelta(hours=1)
    async with web.database.session() as session:
        expired = await session.get(RefreshToken, digest(old["refresh_token"]))
        assert expired is not None
        expired.family_expires_at = expired.expires_at = long_ago
        session.add(expired)
        for login_session in (await session.exec(select(LoginSession))).all():
            login_session.expires_at = utcnow() - timedelta(seconds=1)
            session.add(login_session)
        await session.commit()

    await housekeeping.run_once(web.database, identity.settings)

    async with web.database.session() as session:
        assert await session.get(RefreshToken, digest(old["refresh_token"])) is None
        assert await session.get(RefreshToken, digest(live["refresh_token"])) is not None
        assert (await session.exec(select(LoginSession))).all() == []
    assert (await web.refresh(live["refresh_token"])).status_code == 200


async def test_rotates_a_key_older_than_its_maximum_age(identity: Identity) -> None:
    database = identity.app.state.runtime.database
    async with database.session() as session:
        current = (
            await session.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None)))
        ).all()
        kids = {key.kid for key in current}
        for key in current:
            key.created_at = utcnow() - timedelta(days=100)
            session.add(key)
        await session.commit()
    settings = identity.settings.model_copy(update={"signing_key_max_age_seconds": 86400 * 90})

    await housekeeping.run_once(database, settings)

    async with database.session() as session:
        active = (
            await session.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None)))
        ).all()
    assert len(active) == 1
    assert active[0].kid not in kids
