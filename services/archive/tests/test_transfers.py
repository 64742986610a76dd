"""POST /v1/transfers: SEDA packages from the authorities' software, on PostgreSQL and Kafka."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import func, select

from kanol_archive.logbook import LogbookEntry
from kanol_archive.models import Archive
from kanol_archive.seda.schema import SedaVersion, parse, validation_errors
from kanol_archive.settings import ArchiveSettings
from kanol_common.envelope import decode, header_map
from kanol_common.events.archive import ArchiveDeposited, TransferRejected
from kanol_common.events.identity import OrganisationRegistered
from kanol_common.organisations import apply_organisation
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import read_topic, wait_until

from .conftest import OTHER_SIREN, SIREN, bearer, object_path
from .seda_samples import description, description_of, manifest, with_digest, zip_package

pytestmark = pytest.mark.usefixtures("archive_app")

SCOPES = "archive:write archive:read"


def _files() -> dict[str, bytes]:
    marker = uuid.uuid4().hex
    return {
        "content/deliberation.pdf": f"%PDF-1.7 délibération {marker}".encode() * 40,
        "content/annexe.pdf": f"%PDF-1.7 annexe {marker}".encode() * 40,
    }


def _message_id() -> str:
    return f"MSG-{uuid.uuid4().hex[:12]}"


def _reply(response: httpx.Response) -> tuple[str, list[tuple[str, str, str]], SedaVersion]:
    """The ATR's ReplyCode and its events (type code, outcome, message), checked valid."""
    assert response.headers["content-type"].startswith("application/xml")
    root, version = parse(response.content)
    assert validation_errors(root, version) == ()
    ns = {"s": version.namespace}
    events = [
        (
            event.findtext("s:EventTypeCode", namespaces=ns) or "",
            event.findtext("s:Outcome", namespaces=ns) or "",
            event.findtext("s:OutcomeDetailMessage", namespaces=ns) or "",
        )
        for event in root.iterfind("s:Operation/s:Event", ns)
    ]
    return root.findtext("s:ReplyCode", namespaces=ns) or "", events, version


async def _post_zip(
    api: httpx.AsyncClient, tokens: TokenFactory, body: bytes, siren: str = SIREN
) -> httpx.Response:
    return await api.post(
        "/v1/transfers",
        content=body,
        headers={**bearer(tokens, siren, SCOPES), "Content-Type": "application/zip"},
    )


async def _count_archives(app: FastAPI) -> int:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        return int((await session.exec(select(func.count()).select_from(Archive))).one())


async def _logbook(app: FastAPI, operation: str) -> list[LogbookEntry]:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        query = select(LogbookEntry).where(LogbookEntry.operation == operation)
        return list((await session.exec(query)).all())


async def _archive_events(settings: ArchiveSettings) -> list[object]:
    records = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.kafka_topic_prefix}archive.events",
        count=1_000,
        wait_seconds=3,
    )
    return [decode(header_map(record.headers), record.value).data for record in records]


@pytest.mark.parametrize("version", list(SedaVersion))
async def test_a_zip_package_is_archived_and_answered_with_an_atr_ok(
    archive_app: FastAPI,
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_settings: ArchiveSettings,
    version: SedaVersion,
) -> None:
    files = _files()
    message_id = _message_id()
    sent_manifest = manifest(
        description(files, siren=SIREN, message_identifier=message_id), version
    )

    response = await _post_zip(api, tokens, zip_package(sent_manifest, files))

    assert response.status_code == 201, response.text
    code, events, reply_version = _reply(response)
    assert code == "OK"
    assert reply_version is version
    assert {outcome for _, outcome, _ in events} == {"OK"}
    assert {"CHECK_DIGEST", "CHECK_AGENCIES", "STORAGE_AVAILABILITY_CHECK"} <= {
        type_code for type_code, _, _ in events
    }
    location = response.headers["location"]
    archive_id = location.rsplit("/", 1)[-1]

    read = bearer(tokens, SIREN)
    detail = (await api.get(location, headers=read)).json()
    assert detail["source_kind"] == "transfer"
    assert detail["message_identifier"] == message_id
    assert detail["seda_version"] == version.value
    assert sorted(item["filename"] for item in detail["objects"]) == [
        "annexe.pdf",
        "deliberation.pdf",
    ]
    for item in detail["objects"]:
        content = files[f"content/{item['filename']}"]
        assert item["sha512"] == hashlib.sha512(content).hexdigest()
        assert object_path(archive_settings, item["sha256"]).read_bytes() == content

    stored_manifest = await api.get(f"/v1/archives/{archive_id}/manifest", headers=read)
    assert stored_manifest.content == sent_manifest
    stored_reply = await api.get(f"/v1/archives/{archive_id}/reply", headers=read)
    assert stored_reply.content == response.content
    by_message = await api.get(f"/v1/transfers/{message_id}/reply", headers=read)
    assert by_message.content == response.content
    (deposited_entry,) = [
        entry
        for entry in await _logbook(archive_app, "archive.deposited")
        if entry.archive_id == archive_id
    ]
    assert deposited_entry.details["message_identifier"] == message_id
    downloads = [
        entry.details["which"]
        for entry in await _logbook(archive_app, "seda_document.downloaded")
        if entry.archive_id == archive_id
    ]
    assert sorted(downloads) == ["manifest", "reply", "reply"]

    async def announced() -> bool:
        return any(
            isinstance(event, ArchiveDeposited) and event.archive_id == archive_id
            for event in await _archive_events(archive_settings)
        )

    await wait_until(announced, wait_seconds=20, what="ArchiveDeposited of the transfer")
    deposited = next(
        event
        for event in await _archive_events(archive_settings)
        if isinstance(event, ArchiveDeposited) and event.archive_id == archive_id
    )
    assert deposited.message_identifier == message_id
    assert deposited.reply_url == f"/v1/archives/{archive_id}/reply"
    assert deposited.source_kind == "transfer"


async def test_a_multipart_transfer_is_archived(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    sent = manifest(description(files, siren=SIREN, message_identifier=_message_id()))
    parts = [("manifest", ("manifest.xml", sent, "application/xml"))] + [
        ("file", (path, content, "application/pdf")) for path, content in files.items()
    ]

    response = await api.post("/v1/transfers", files=parts, headers=bearer(tokens, SIREN, SCOPES))

    assert response.status_code == 201, response.text
    assert _reply(response)[0] == "OK"


async def test_a_multipart_file_named_outside_the_package_is_refused(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = {"content/a.pdf": b"%PDF a"}
    sent = manifest(description(files, siren=SIREN, message_identifier=_message_id()))
    parts = [
        ("manifest", ("manifest.xml", sent, "application/xml")),
        ("file", ("../../content/a.pdf", files["content/a.pdf"], "application/pdf")),
    ]
    archives = await _count_archives(archive_app)

    response = await api.post("/v1/transfers", files=parts, headers=bearer(tokens, SIREN, SCOPES))

    assert response.status_code == 422
    _, events, _ = _reply(response)
    assert any("leaves the package" in message for _, _, message in events), events
    assert await _count_archives(archive_app) == archives


async def test_the_same_transfer_twice_makes_one_archive_and_the_same_atr(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    message_id = _message_id()
    body = zip_package(
        manifest(description(files, siren=SIREN, message_identifier=message_id)), files
    )

    first = await _post_zip(api, tokens, body)
    archives = await _count_archives(archive_app)
    second = await _post_zip(api, tokens, body)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert await _count_archives(archive_app) == archives

    other = manifest(description(_files(), siren=SIREN, message_identifier=message_id))
    reused = await _post_zip(api, tokens, zip_package(other, _files()))
    assert reused.status_code == 409
    assert reused.json()["type"].endswith("/message-identifier-reused")


async def test_a_fingerprint_mismatch_is_refused_with_every_reason_and_nothing_kept(
    archive_app: FastAPI,
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_settings: ArchiveSettings,
) -> None:
    files = _files()
    message_id = _message_id()
    described = with_digest(
        description(files, siren=SIREN, message_identifier=message_id), 0, "0" * 128
    )
    sent = dict(files)
    sent["content/extra.pdf"] = b"%PDF not announced"
    archives = await _count_archives(archive_app)

    response = await _post_zip(api, tokens, zip_package(manifest(described), sent))

    assert response.status_code == 422
    code, events, _ = _reply(response)
    assert code == "KO"
    failures = [(type_code, message) for type_code, outcome, message in events if outcome == "KO"]
    assert [type_code for type_code, _ in failures] == [
        "CHECK_MANIFEST_OBJECTNUMBER",
        "CHECK_DIGEST",
    ]
    assert "content/extra.pdf" in failures[0][1]
    assert "content/deliberation.pdf" in failures[1][1]
    assert await _count_archives(archive_app) == archives
    for content in files.values():
        assert not object_path(archive_settings, hashlib.sha256(content).hexdigest()).exists()
    (refusal,) = [
        entry
        for entry in await _logbook(archive_app, "transfer.refused")
        if entry.details.get("message_identifier") == message_id
    ]
    assert (refusal.outcome, refusal.siren, refusal.actor) == ("KO", SIREN, "test-client")
    assert len(refusal.details["reasons"]) == 2

    async def announced() -> bool:
        return any(
            isinstance(event, TransferRejected) and event.message_identifier == message_id
            for event in await _archive_events(archive_settings)
        )

    await wait_until(announced, wait_seconds=20, what="TransferRejected")
    rejected = next(
        event
        for event in await _archive_events(archive_settings)
        if isinstance(event, TransferRejected) and event.message_identifier == message_id
    )
    assert rejected.siren == SIREN
    assert len(rejected.reasons) == 2
    read = bearer(tokens, SIREN)
    assert (await api.get(f"/v1/transfers/{message_id}/reply", headers=read)).status_code == 404


@pytest.mark.parametrize(
    ("agency", "reason"),
    [
        # An organisation of the platform, but not the caller.
        (OTHER_SIREN, "is not the caller's organisation"),
        # Rennes Métropole's SIREN: a real one, but not an organisation of the platform.
        ("243500139", "is not an organisation of the platform"),
    ],
)
async def test_a_transfer_for_another_or_an_unknown_organisation_is_refused(
    api: httpx.AsyncClient, tokens: TokenFactory, agency: str, reason: str
) -> None:
    files = _files()
    sent = manifest(description(files, siren=agency, message_identifier=_message_id()))

    response = await _post_zip(api, tokens, zip_package(sent, files))

    assert response.status_code == 422
    _, events, _ = _reply(response)
    failures = [message for type_code, outcome, message in events if outcome == "KO"]
    assert any(m.startswith("TransferringAgency") and reason in m for m in failures), failures
    assert any(m.startswith("OriginatingAgencyIdentifier") for m in failures), failures


async def test_an_epci_transfers_for_one_of_its_communes(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    commune = "210800041"
    async with archive_app.state.runtime.database.session() as session:
        await apply_organisation(
            session,
            OrganisationRegistered(
                siren=commune,
                name="Commune de la métropole",
                kind="commune",
                departement="035",
                parent_siren=SIREN,
            ),
        )
        await session.commit()
    files = _files()
    described = replace(
        description(files, siren=SIREN, message_identifier=_message_id()),
        originating_agency=commune,
        submission_agency=commune,
    )

    response = await _post_zip(api, tokens, zip_package(manifest(described), files))
    stranger = replace(described, message_identifier=_message_id(), transferring_agency=commune)
    refused = await _post_zip(api, tokens, zip_package(manifest(stranger), files))

    assert response.status_code == 201, response.text
    detail = (await api.get(response.headers["location"], headers=bearer(tokens, SIREN))).json()
    assert detail["originating_agency"] == commune
    assert refused.status_code == 422


async def test_another_organisation_cannot_read_the_seda_documents(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    message_id = _message_id()
    body = zip_package(
        manifest(description(files, siren=SIREN, message_identifier=message_id)), files
    )
    location = (await _post_zip(api, tokens, body)).headers["location"]
    stranger = bearer(tokens, OTHER_SIREN)

    for path in (f"{location}/manifest", f"{location}/reply", f"/v1/transfers/{message_id}/reply"):
        response = await api.get(path, headers=stranger)
        assert response.status_code == 404, path


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"PK\x03\x04 not really a zip", "not a usable ZIP"),
        (zip_package(b"<x/>", {"../../etc/cron.d/evil": b"* * * * * root sh"}), "leaves"),
        (zip_package(b"<x/>", {"content/zeros.bin": b"\0" * (3 * 1024 * 1024)}), "ratio"),
        (zip_package(None, {"content/a.pdf": b"a"}), "manifest.xml"),
        (zip_package(b"<ArchiveTransfer xmlns='urn:x'/>", {}), "namespace"),
        (
            zip_package(
                manifest(description({}, siren=SIREN))
                .replace(b"<Title>", b"<Titre>", 1)
                .replace(b"</Title>", b"</Titre>", 1),
                {},
            ),
            "ArchiveUnit/Content",
        ),
        (
            zip_package(
                b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b'<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.1">&e;'
                b"</ArchiveTransfer>",
                {},
            ),
            "DTD",
        ),
    ],
)
async def test_a_hostile_or_broken_package_gets_an_atr_ko(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory, body: bytes, reason: str
) -> None:
    archives = await _count_archives(archive_app)

    response = await _post_zip(api, tokens, body)

    assert response.status_code == 422
    code, events, _ = _reply(response)
    assert code == "KO"
    assert any(reason in message for _, outcome, message in events if outcome == "KO"), events
    assert await _count_archives(archive_app) == archives
    assert list(archive_app.state.settings.spool_dir().iterdir()) == []


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    # A body sent without Content-Length: the limit can only be found by counting.
    for start in range(0, len(data), 512):
        yield data[start : start + 512]


async def test_an_oversize_transfer_is_cut_off_with_413(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    settings: ArchiveSettings = archive_app.state.settings
    limit = settings.transfer_max_bytes
    settings.transfer_max_bytes = 1024
    boundary = "kanol-boundary"
    multipart_body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"; '
            f'filename="manifest.xml"\r\nContent-Type: application/xml\r\n\r\n<x/>\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="content/a.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        + b"x" * 4096
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = bearer(tokens, SIREN, SCOPES)
    try:
        announced = await _post_zip(api, tokens, b"x" * 4096)
        zipped = await api.post(
            "/v1/transfers",
            content=_chunked(b"x" * 4096),
            headers={**headers, "Content-Type": "application/zip"},
        )
        multipart = await api.post(
            "/v1/transfers",
            content=_chunked(multipart_body),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    finally:
        settings.transfer_max_bytes = limit

    for response in (announced, zipped, multipart):
        assert response.status_code == 413, response.text
        assert response.json()["type"].endswith("/transfer-too-large")


async def test_an_unsupported_body_or_a_missing_scope_is_refused(
    api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    text = await api.post(
        "/v1/transfers",
        content=b"hello",
        headers={**bearer(tokens, SIREN, SCOPES), "Content-Type": "text/plain"},
    )
    reader_only = await api.post(
        "/v1/transfers",
        content=b"PK",
        headers={**bearer(tokens, SIREN, "archive:read"), "Content-Type": "application/zip"},
    )

    assert text.status_code == 415
    assert reader_only.status_code == 403


async def test_an_idempotency_key_replays_the_first_answer(
    archive_app: FastAPI, api: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    files = _files()
    body = zip_package(
        manifest(description(files, siren=SIREN, message_identifier=_message_id())), files
    )
    headers = {
        **bearer(tokens, SIREN, SCOPES),
        "Content-Type": "application/zip",
        "Idempotency-Key": str(uuid.uuid4()),
    }

    first = await api.post("/v1/transfers", content=body, headers=headers)
    archives = await _count_archives(archive_app)
    again = await api.post("/v1/transfers", content=body, headers=headers)
    other_files = _files()
    other = zip_package(
        manifest(description(other_files, siren=SIREN, message_identifier=_message_id())),
        other_files,
    )
    reused = await api.post("/v1/transfers", content=other, headers=headers)

    assert first.status_code == 201
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotency-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert await _count_archives(archive_app) == archives
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")


async def test_a_large_package_streams_through_without_being_held_in_memory(
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_settings: ArchiveSettings,
    tmp_path: Path,
) -> None:
    # 24 MiB of incompressible content in three files, stored as they are in the ZIP.
    announced: list[tuple[str, int, str]] = []
    package = tmp_path / "package.zip"
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_STORED) as archive:
        for number in range(3):
            source = tmp_path / f"scan-{number}.pdf"
            digest = hashlib.sha512()
            with source.open("wb") as file:
                for _ in range(8):
                    chunk = os.urandom(1024 * 1024)
                    digest.update(chunk)
                    file.write(chunk)
            announced.append((f"content/scan-{number}.pdf", 8 * 1024 * 1024, digest.hexdigest()))
            archive.write(source, f"content/scan-{number}.pdf")
        described = description_of(announced, siren=SIREN, message_identifier=_message_id())
        archive.writestr("manifest.xml", manifest(described))

    async def body() -> AsyncIterator[bytes]:
        with package.open("rb") as file:
            while chunk := file.read(256 * 1024):
                yield chunk

    tracemalloc.start()
    try:
        response = await api.post(
            "/v1/transfers",
            content=body(),
            headers={**bearer(tokens, SIREN, SCOPES), "Content-Type": "application/zip"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 201, response.text
    assert package.stat().st_size > 24 * 1024 * 1024
    # Nothing of the package stays in the spool once answered.
    assert list(archive_settings.spool_dir().iterdir()) == []
    # The package went through in chunks: the peak is a few chunks, not the package.
    assert peak < 8 * 1024 * 1024, f"peak of {peak} bytes while receiving 24 MiB"
