"""Brute force slowed: per client, per account and per address, with delays that grow, expire,
and hold across replicas (they live in the database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from kanol_identity.models import utcnow
from kanol_identity.oauth.testing import WebApp, authorize_params, hidden_fields, pkce_pair
from kanol_identity.settings import IdentitySettings
from kanol_identity.testing import Identity
from kanol_identity.throttle import (
    Throttle,
    ThrottleEntry,
    TooManyAttempts,
    account_key,
    address_key,
    client_key,
)


def _throttle(identity: Identity) -> Throttle:
    throttle: Throttle = identity.app.state.throttle
    return throttle


async def _expire(identity: Identity, *, forget: bool) -> None:
    """Move every refusal into the past, as if the delay had been waited out."""
    past = utcnow() - timedelta(seconds=1)
    async with identity.app.state.runtime.database.session() as session:
        for entry in (await session.exec(select(ThrottleEntry))).all():
            entry.blocked_until = past
            if forget:
                window = identity.settings.throttle_window_seconds
                entry.last_failure_at = past - timedelta(seconds=window)
            session.add(entry)
        await session.commit()


class TestDelays:
    def test_grow_after_the_free_failures_up_to_a_ceiling(self) -> None:
        settings = IdentitySettings(
            throttle_free_failures=5, throttle_base_delay_seconds=2, throttle_max_delay_seconds=900
        )
        throttle = Throttle(database=None, settings=settings)  # type: ignore[arg-type]
        key = account_key("agent@mairie.test")

        delays = [throttle.delay_after(key, failures) for failures in range(1, 16)]

        assert delays[:4] == [0, 0, 0, 0]
        assert delays[4:9] == [2, 4, 8, 16, 32]
        assert max(delays) == 900
        assert throttle.delay_after(key, 10_000) == 900

    def test_an_address_has_more_free_failures_than_an_account(self) -> None:
        throttle = Throttle(database=None, settings=IdentitySettings())  # type: ignore[arg-type]

        assert throttle.delay_after(address_key("10.0.0.1"), 20) == 0
        assert throttle.delay_after(account_key("a@b.test"), 20) > 0


class TestTokenEndpoint:
    async def test_a_guessed_secret_is_refused_429_then_allowed_again(
        self, identity: Identity
    ) -> None:
        _, client_id, secret = await identity.add_client("actes:read")
        free = identity.settings.throttle_free_failures
        for _ in range(free):
            assert (await identity.token_response(client_id, "guess")).status_code == 401

        refused = await identity.token_response(client_id, secret)

        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"].endswith("too-many-attempts")
        await _expire(identity, forget=False)
        assert (await identity.token_response(client_id, secret)).status_code == 200
        # The success cleared the client's count: a later typo is not punished at once.
        assert (await identity.token_response(client_id, "typo")).status_code == 401
        assert (await identity.token_response(client_id, secret)).status_code == 200

    async def test_the_refusal_holds_across_replicas(self, identity: Identity) -> None:
        _, client_id, _ = await identity.add_client("actes:read")
        for _ in range(identity.settings.throttle_free_failures):
            await identity.token_response(client_id, "guess")
        other_replica = Throttle(identity.app.state.runtime.database, identity.settings)

        with pytest.raises(TooManyAttempts):
            await other_replica.check([client_key(client_id)])

    async def test_another_client_is_not_slowed(self, identity: Identity) -> None:
        _, victim, _ = await identity.add_client("actes:read")
        _, other, other_secret = await identity.add_client("actes:read")
        for _ in range(identity.settings.throttle_free_failures):
            await identity.token_response(victim, "guess")

        assert (await identity.token_response(other, other_secret)).status_code == 200


class TestLogin:
    async def _try(self, web: WebApp, login: str, password: str) -> tuple[int, str, str]:
        _, challenge = pkce_pair()
        async with web.browser() as browser:
            page = await browser.get(
                "/oauth/authorize", params=authorize_params(web.client_id, challenge)
            )
            form = {**hidden_fields(page.text), "login": login, "password": password}
            answer = await browser.post("/oauth/authorize/login", data=form)
        return answer.status_code, answer.text, answer.headers.get("retry-after", "")

    async def test_guessed_passwords_slow_the_account_then_it_opens_again(
        self, identity: Identity
    ) -> None:
        web = await WebApp.create(identity)
        agent = await web.agent()
        for _ in range(identity.settings.throttle_free_failures):
            status, _, _ = await self._try(web, agent.login, "devine")
            assert status == 400

        status, page, retry_after = await self._try(web, agent.login, agent.password)

        assert status == 429
        assert int(retry_after) >= 1
        assert "essais infructueux" in page
        assert 'aria-describedby="password-error"' in page
        # Waiting one delay out allows one try; another failure waits longer.
        await _expire(identity, forget=False)
        status, _, first_wait = await self._try(web, agent.login, "devine")
        assert status == 400
        status, _, second_wait = await self._try(web, agent.login, "devine")
        assert status == 429
        assert int(second_wait) > int(retry_after)
        await _expire(identity, forget=True)
        status, _, _ = await self._try(web, agent.login, agent.password)
        assert status == 303
        assert first_wait == ""
