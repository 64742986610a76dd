"""Search within the caller's organisation by kind, dates, acte and title words, by cursor
pages; every search, description read and download is in the logbook with its reader."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from kanol_archive.logbook import LogbookEntry, Operation
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory

from .conftest import Depositor

# An organisation of this module's own, so that other tests' archives stay out of the way.
SIREN = "200000172"
STRANGER = "200000180"


def _reader(
    tokens: TokenFactory, siren: str = SIREN, client_id: str = "ged-sync"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(siren, 'archive:read', client_id=client_id)}"}


async def _entries(app: FastAPI, operation: str) -> list[LogbookEntry]:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        result = await session.exec(
            select(LogbookEntry)
            .where(LogbookEntry.operation == operation)
            .order_by(col(LogbookEntry.sequence))
        )
        return list(result.all())


@pytest.fixture(scope="module")
def marker() -> str:
    return uuid.uuid4().hex[:8]


async def test_filters_narrow_the_organisations_archives(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor, marker: str
) -> None:
    budget = await make_archive(
        SIREN, nature=5, objet=f"Budget PRIMITIF {marker}", date_decision=date(2023, 3, 1)
    )
    contract = await make_archive(
        SIREN, nature=4, objet=f"Convention de voirie {marker}", date_decision=date(2024, 6, 1)
    )
    await make_archive(
        STRANGER, nature=5, objet=f"Budget primitif {marker}", date_decision=date(2023, 3, 1)
    )

    async def ids(**params: str) -> set[str]:
        response = await api.get("/v1/archives", params=params, headers=_reader(tokens))
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert await ids(q=f"budget primitif {marker}") == {str(budget.archive.id)}
    assert await ids(q=marker) == {str(budget.archive.id), str(contract.archive.id)}
    assert await ids(q=marker, kind="acte.CC") == {str(contract.archive.id)}
    assert await ids(q=marker, decided_from="2024-01-01") == {str(contract.archive.id)}
    assert await ids(q=marker, decided_to="2023-12-31") == {str(budget.archive.id)}
    assert await ids(acte_id=budget.archive.acte_id or "") == {str(budget.archive.id)}
    today = date.today()
    assert len(await ids(q=marker, deposited_from=str(today), deposited_to=str(today))) == 2
    assert await ids(q=marker, deposited_to=str(today - timedelta(days=1))) == set()
    assert await ids(q="100%_sure") == set()


async def test_bad_filters_are_refused(api: httpx.AsyncClient, tokens: TokenFactory) -> None:
    unknown_kind = await api.get("/v1/archives?kind=acte.ZZ", headers=_reader(tokens))
    bad_cursor = await api.get("/v1/archives?cursor=not-ours", headers=_reader(tokens))
    bad_date = await api.get("/v1/archives?deposited_from=yesterday", headers=_reader(tokens))

    assert unknown_kind.status_code == 400
    assert unknown_kind.json()["type"].endswith("unknown-archive-kind")
    assert bad_cursor.status_code == 400
    assert bad_date.status_code == 422


async def test_cursor_pages_walk_every_match_once(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    word = uuid.uuid4().hex[:8]
    made = {
        str((await make_archive(SIREN, objet=f"Arrêté {word} {n}")).archive.id) for n in range(5)
    }

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"q": word, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/archives", params=params, headers=_reader(tokens))).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break

    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))


async def test_every_access_is_in_the_logbook_with_its_reader(
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_app: FastAPI,
    make_archive: Depositor,
) -> None:
    content = b"%PDF-1.7 " + uuid.uuid4().bytes
    deposit = await make_archive(SIREN, content)
    sha256 = hashlib.sha256(content).hexdigest()
    headers = _reader(tokens, client_id="logiciel-metier")

    await api.get("/v1/archives", params={"acte_id": deposit.archive.acte_id}, headers=headers)
    await api.get(f"/v1/archives/{deposit.archive.id}", headers=headers)
    downloaded = await api.get(
        f"/v1/archives/{deposit.archive.id}/objects/{sha256}", headers=headers
    )

    assert downloaded.content == content
    archive_id = str(deposit.archive.id)
    searched = (await _entries(archive_app, Operation.ARCHIVES_SEARCHED))[-1]
    read = [
        e for e in await _entries(archive_app, Operation.ARCHIVE_READ) if e.archive_id == archive_id
    ]
    got = [
        e
        for e in await _entries(archive_app, Operation.OBJECT_DOWNLOADED)
        if e.archive_id == archive_id
    ]
    assert (searched.actor, searched.siren) == ("logiciel-metier", SIREN)
    assert searched.details["query"] == {"acte_id": deposit.archive.acte_id}
    assert [(e.actor, e.siren) for e in read] == [("logiciel-metier", SIREN)]
    assert [(e.actor, e.details["sha512"]) for e in got] == [
        ("logiciel-metier", hashlib.sha512(content).hexdigest())
    ]


async def test_another_organisations_archive_is_not_found_and_not_listed(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    content = b"%PDF-1.7 stranger " + uuid.uuid4().bytes
    theirs = await make_archive(STRANGER, content, objet="Arrêté du voisin")
    sha256 = hashlib.sha256(content).hexdigest()

    listed = await api.get("/v1/archives", params={"q": "voisin"}, headers=_reader(tokens))
    described = await api.get(f"/v1/archives/{theirs.archive.id}", headers=_reader(tokens))
    downloaded = await api.get(
        f"/v1/archives/{theirs.archive.id}/objects/{sha256}", headers=_reader(tokens)
    )
    missing = await api.get(f"/v1/archives/{uuid.uuid4()}", headers=_reader(tokens))

    assert listed.json()["items"] == []
    assert described.status_code == 404
    assert downloaded.status_code == 404
    assert described.json()["type"] == missing.json()["type"]
