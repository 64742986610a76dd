"""The seed command: a second run changes nothing; it declares clients that get tokens."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func
from sqlmodel import select

from kanol_common.delivery_models import OutboxMessage
from kanol_identity.__main__ import main
from kanol_identity.models import ApiClient, Organisation
from kanol_identity.testing import Identity, new_siren


async def _counts(identity: Identity) -> tuple[int, int, int, str]:
    async with identity.app.state.runtime.database.session() as session:
        organisations = (await session.exec(select(func.count()).select_from(Organisation))).one()
        clients = (await session.exec(select(func.count()).select_from(ApiClient))).one()
        events = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
        hashes = (await session.exec(select(ApiClient.secret_hash))).all()
    return organisations, clients, events, "".join(sorted(hashes))


async def test_seed_twice_changes_nothing(
    identity: Identity, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KANOL_DATABASE_URL", identity.settings.resolved_database_url())
    siren = new_siren()
    args = [
        "seed",
        *("--siren", siren, "--name", "Commune de Démo", "--kind", "commune"),
        *("--departement", "035", "--client-id", f"demo-{siren}", "--services", "all"),
        *("--client-secret", "demo-secret", "--scopes", "actes:write actes:read archive:read"),
    ]

    assert await asyncio.to_thread(main, args) == 0
    after_first = await _counts(identity)
    assert await asyncio.to_thread(main, args) == 0
    after_second = await _counts(identity)

    assert after_second == after_first
    output = capsys.readouterr().out
    assert f"organisation {siren}: registered" in output
    assert f"organisation {siren}: unchanged" in output
    assert f"client demo-{siren}: unchanged" in output
    token = await identity.token(f"demo-{siren}", "demo-secret")
    assert token


async def test_seed_brings_a_client_to_its_new_secret_and_scopes(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANOL_DATABASE_URL", identity.settings.resolved_database_url())
    siren = new_siren()
    common = ["seed", "--siren", siren, "--name", "Syndicat", "--kind", "syndicat"]
    common += ["--departement", "035", "--client-id", f"svc-{siren}", "--services", "actes"]

    await asyncio.to_thread(main, [*common, "--client-secret", "one", "--scopes", "actes:read"])
    await asyncio.to_thread(main, [*common, "--client-secret", "two", "--scopes", "documents:read"])

    refused = await identity.token_response(f"svc-{siren}", "one")
    granted = await identity.token_response(f"svc-{siren}", "two")
    assert refused.status_code == 401
    assert granted.json()["scope"] == "documents:read"
