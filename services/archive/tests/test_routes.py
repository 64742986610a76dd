"""The read API: an organisation sees its own archives only, pages through them, downloads."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from kanol_common.testing.auth import TokenFactory

from .conftest import OTHER_SIREN, SIREN, Depositor, bearer


async def test_an_archive_shows_its_objects_and_fingerprints(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    acte, ar_acte = b"%PDF-1.7 deliberation", b"<ARActe/>"
    deposit = await make_archive(SIREN, acte, ar_acte)

    response = await api.get(f"/v1/archives/{deposit.archive.id}", headers=bearer(tokens, SIREN))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(deposit.archive.id)
    assert body["acte_id"] == deposit.archive.acte_id
    assert body["identifiant_acte"] == deposit.archive.identifiant_acte
    assert body["title"] == deposit.archive.title
    assert [(item["role"], item["size"]) for item in body["objects"]] == [
        ("acte", len(acte)),
        ("ar_acte", len(ar_acte)),
    ]
    first = body["objects"][0]
    assert first["sha256"] == hashlib.sha256(acte).hexdigest()
    assert first["sha512"] == hashlib.sha512(acte).hexdigest()
    assert first["download_url"] == f"/v1/archives/{deposit.archive.id}/objects/{first['sha256']}"
    assert "storage_key" not in first


async def test_an_object_downloads_as_deposited(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    content = b"%PDF-1.7 " + bytes(range(256)) * 4000  # several chunks of the store
    deposit = await make_archive(SIREN, content)
    sha256 = hashlib.sha256(content).hexdigest()

    response = await api.get(
        f"/v1/archives/{deposit.archive.id}/objects/{sha256}", headers=bearer(tokens, SIREN)
    )

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["etag"] == f'"{sha256}"'
    assert response.headers["content-disposition"].startswith("attachment; filename*=UTF-8''doc-")


async def test_another_organisation_sees_nothing(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    deposit = await make_archive(SIREN, b"%PDF secret")
    sha256 = deposit.objects[0].sha256
    stranger = bearer(tokens, OTHER_SIREN)

    detail = await api.get(f"/v1/archives/{deposit.archive.id}", headers=stranger)
    download = await api.get(
        f"/v1/archives/{deposit.archive.id}/objects/{sha256}", headers=stranger
    )
    listing = await api.get(
        "/v1/archives", params={"acte_id": deposit.archive.acte_id}, headers=stranger
    )

    assert detail.status_code == 404
    assert detail.headers["content-type"].startswith("application/problem+json")
    assert detail.json()["type"].endswith("/archive-not-found")
    assert download.status_code == 404
    assert listing.status_code == 200
    assert listing.json()["items"] == []


async def test_the_list_filters_by_acte(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    wanted = await make_archive(SIREN)
    await make_archive(SIREN)
    headers = bearer(tokens, SIREN)

    by_acte = await api.get(
        "/v1/archives", params={"acte_id": wanted.archive.acte_id}, headers=headers
    )
    by_identifiant = await api.get(
        "/v1/archives",
        params={"identifiant_acte": wanted.archive.identifiant_acte},
        headers=headers,
    )

    assert [item["id"] for item in by_acte.json()["items"]] == [str(wanted.archive.id)]
    assert [item["id"] for item in by_identifiant.json()["items"]] == [str(wanted.archive.id)]
    assert by_acte.json()["next_cursor"] is None


async def test_the_list_pages_newest_first_without_gaps_or_repeats(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    siren = "200000172"
    deposits = [await make_archive(siren) for _ in range(5)]
    headers = bearer(tokens, siren)

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await api.get("/v1/archives", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [str(deposit.archive.id) for deposit in reversed(deposits)]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/archives?cursor=bm90LWEtY3Vyc29y", 400),
        ("/v1/archives?limit=0", 422),
        (f"/v1/archives/{uuid.uuid4()}", 404),
        ("/v1/archives/not-a-uuid", 422),
        (f"/v1/archives/{uuid.uuid4()}/objects/not-a-hash", 422),
        (f"/v1/archives/{uuid.uuid4()}/objects/{'a' * 64}", 404),
    ],
)
async def test_bad_requests_get_problems(
    api: httpx.AsyncClient, tokens: TokenFactory, path: str, status: int
) -> None:
    response = await api.get(path, headers=bearer(tokens, SIREN))

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_object_of_another_archive_is_not_served_through_this_one(
    api: httpx.AsyncClient, tokens: TokenFactory, make_archive: Depositor
) -> None:
    mine = await make_archive(SIREN, b"%PDF mine")
    other = await make_archive(SIREN, b"%PDF other")

    response = await api.get(
        f"/v1/archives/{mine.archive.id}/objects/{other.objects[0].sha256}",
        headers=bearer(tokens, SIREN),
    )

    assert response.status_code == 404
    assert response.json()["type"].endswith("/archive-object-not-found")


async def test_a_token_is_required_with_the_archive_read_scope(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    anonymous = await api.get("/v1/archives")
    wrong_scope = await api.get("/v1/archives", headers=bearer(tokens, SIREN, "actes:read"))

    assert anonymous.status_code == 401
    assert wrong_scope.status_code == 403
