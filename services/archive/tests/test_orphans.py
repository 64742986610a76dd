"""Collecting orphans: content a failed deposit left in the store goes once its grace period
has passed; what any archive or transfer needs, content written recently and content a
deposit holds at that moment stay; the collection is written in the logbook."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from kanol_archive import orphans
from kanol_archive.__main__ import main
from kanol_archive.logbook import LogbookEntry, Operation
from kanol_archive.settings import ArchiveSettings
from kanol_common import holds
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import LocalObjectStore

from .conftest import SIREN, Depositor, object_path

DAY = timedelta(days=1)


def _store(app: FastAPI) -> LocalObjectStore:
    store = app.state.object_store
    assert isinstance(store, LocalObjectStore)
    return store


def _age(settings: ArchiveSettings, *contents: str, days: float = 2) -> None:
    """Make stored contents look written ``days`` ago."""
    then = time.time() - days * 86400
    for sha256 in contents:
        os.utime(object_path(settings, sha256), (then, then))


def _age_everything(settings: ArchiveSettings, days: float = 2) -> None:
    then = time.time() - days * 86400
    for path in settings.objects_dir().rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


async def _last_entry(app: FastAPI) -> LogbookEntry:
    runtime: ServiceRuntime = app.state.runtime
    async with runtime.database.session() as session:
        result = await session.exec(
            select(LogbookEntry).order_by(col(LogbookEntry.sequence).desc()).limit(1)
        )
        return result.one()


async def test_an_orphan_goes_and_what_archives_need_stays(
    archive_app: FastAPI, archive_settings: ArchiveSettings, make_archive: Depositor
) -> None:
    deposit = await make_archive(SIREN, b"%PDF-1.7 kept acte", b"<ARActe/>")
    orphan = await _store(archive_app).put(b"%PDF-1.7 left by a deposit that failed")
    _age_everything(archive_settings)
    runtime: ServiceRuntime = archive_app.state.runtime

    collection = await orphans.collect(runtime.database, _store(archive_app), grace=DAY)

    assert [item.sha256 for item in collection.orphans] == [orphan.sha256]
    assert not object_path(archive_settings, orphan.sha256).exists()
    needed = [item.sha256 for item in deposit.objects]
    needed += [deposit.archive.manifest_sha256 or "", deposit.archive.reply_sha256 or ""]
    assert all(object_path(archive_settings, sha256).exists() for sha256 in needed)
    entry = await _last_entry(archive_app)
    assert entry.operation == Operation.ORPHANS_COLLECTED
    assert entry.details["orphans"] == [orphan.sha256]
    assert entry.details["orphan_bytes"] == orphan.size


async def test_recent_content_and_a_dry_run_leave_the_store_as_it_is(
    archive_app: FastAPI, archive_settings: ArchiveSettings
) -> None:
    store, runtime = _store(archive_app), archive_app.state.runtime
    recent = await store.put(b"a deposit on its way to its commit")
    old = await store.put(b"an old orphan, only listed")
    _age(archive_settings, old.sha256)

    dry = await orphans.collect(runtime.database, store, grace=DAY, dry_run=True)

    assert [item.sha256 for item in dry.orphans] == [old.sha256]
    assert object_path(archive_settings, old.sha256).exists()
    assert object_path(archive_settings, recent.sha256).exists()

    done = await orphans.collect(runtime.database, store, grace=DAY)

    assert [item.sha256 for item in done.orphans] == [old.sha256]
    assert object_path(archive_settings, recent.sha256).exists()


async def test_content_a_deposit_holds_is_left_until_its_transaction_ends(
    archive_app: FastAPI, archive_settings: ArchiveSettings
) -> None:
    store, runtime = _store(archive_app), archive_app.state.runtime
    held = await store.put(b"stored by a deposit not yet committed")
    _age(archive_settings, held.sha256)

    async with runtime.database.session() as deposit:
        await holds.hold(deposit, held.sha256)
        while_held = await orphans.collect(runtime.database, store, grace=DAY)
        assert object_path(archive_settings, held.sha256).exists()
        await deposit.rollback()
    after = await orphans.collect(runtime.database, store, grace=DAY)

    assert held.sha256 not in [item.sha256 for item in while_held.orphans]
    assert [item.sha256 for item in after.orphans] == [held.sha256]
    assert not object_path(archive_settings, held.sha256).exists()


async def test_a_removal_waits_for_no_one_and_a_deposit_waits_for_the_removal(
    archive_app: FastAPI,
) -> None:
    runtime: ServiceRuntime = archive_app.state.runtime
    sha256 = "ab" * 32

    async with runtime.database.session() as remover:
        assert await holds.take(remover, sha256)
        async with runtime.database.session() as deposit:
            waiting = asyncio.create_task(holds.hold(deposit, sha256))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await remover.commit()
            await asyncio.wait_for(waiting, 5)
            async with runtime.database.session() as other_remover:
                assert not await holds.take(other_remover, sha256)


async def test_the_command_removes_leftovers_and_reports(
    archive_app: FastAPI,
    archive_settings: ArchiveSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orphan = await _store(archive_app).put(b"an orphan the command finds")
    _age(archive_settings, orphan.sha256)
    leftover = Path(archive_settings.objects_dir()) / ".incoming-stopped-write"
    leftover.write_bytes(b"half a document")
    then = time.time() - 2 * 86400
    os.utime(leftover, (then, then))
    monkeypatch.setenv("KANOL_DATABASE_URL", archive_settings.resolved_database_url())
    monkeypatch.setenv("KANOL_DATA_DIR", str(archive_settings.data_dir))

    dry = await asyncio.to_thread(main, ["collect-orphans", "--dry-run", "--quiet"])
    dry_output = capsys.readouterr().out
    code = await asyncio.to_thread(main, ["collect-orphans", "--quiet", "--grace-hours", "1"])
    output = capsys.readouterr().out

    assert dry == 0 and code == 0
    assert orphan.sha256 in dry_output and "would remove 1 orphan(s)" in dry_output
    assert "removed 1 orphan(s)" in output and "1 leftover(s)" in output
    assert not leftover.exists()
    assert not object_path(archive_settings, orphan.sha256).exists()
    refused = await asyncio.to_thread(main, ["collect-orphans", "--grace-hours", "-1"])
    assert refused == 2
