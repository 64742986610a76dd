"""actes-pes's orphan collection: content a failed submission left in the store goes once
its grace period has passed; every document of an acknowledged acte and of an acknowledged
PES flow, and the PES returns, stay."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

import pytest

from kanol_actes_pes.__main__ import main
from kanol_actes_pes.orphans import in_use
from kanol_common import orphans
from kanol_common.storage import LocalObjectStore

from .conftest import Actes, Pes, Simulator
from .test_pes_transmission import posted


def _stored(pes: Pes) -> set[str]:
    return {path.name for path in pes.settings.objects_dir().rglob("*") if path.is_file()}


def _age_everything(pes: Pes, days: float = 2) -> None:
    then = time.time() - days * 86400
    for path in pes.settings.objects_dir().rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


async def test_an_orphan_goes_and_every_document_stays(
    pes: Pes,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    actes = Actes(pes.app, pes.settings, pes.http, pes.tokens, simulator)
    acte_id = (await actes.submit()).json()["id"]
    await actes.transmitter.run_once()
    await actes.receiver.fetch_once(wait_seconds=2)
    flow_id = await posted(pes)
    await pes.transmitter.run_once()
    await pes.acquits.receive_once()
    assert await pes.retours.fetch_once() == 1
    acte = await actes.acte(acte_id)
    assert acte["state"] == "acknowledged" and len(acte["documents"]) == 6
    store = LocalObjectStore(pes.settings.objects_dir())
    orphan = await store.put(b"%PDF-1.7 an annexe whose submission failed")
    _age_everything(pes)
    needed = _stored(pes) - {orphan.sha256}
    monkeypatch.setenv("KANOL_DATABASE_URL", pes.settings.resolved_database_url())
    monkeypatch.setenv("KANOL_DATA_DIR", str(pes.settings.data_dir))

    dry = await asyncio.to_thread(main, ["collect-orphans", "--dry-run", "--quiet"])
    dry_output = capsys.readouterr().out
    collection = await orphans.collect(
        pes.app.state.runtime.database, store, in_use, grace=timedelta(days=1)
    )

    assert dry == 0 and orphan.sha256 in dry_output and "would remove 1 orphan(s)" in dry_output
    assert [item.sha256 for item in collection.orphans] == [orphan.sha256]
    assert _stored(pes) == needed
    for document in acte["documents"]:
        fetched = await actes.http.get(document["uri"], headers=actes.headers())
        assert fetched.status_code == 200, document["role"]
    acquit = await pes.http.get(f"/v1/pes/flows/{flow_id}/acquit", headers=pes.headers())
    assert acquit.status_code == 200
