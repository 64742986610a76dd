"""Retention: rules per kind, changed by an operator and logged; due archives proposed to
their organisation's archivist, who approves (content destroyed unless another archive
holds it, description kept) or refuses (kept, decision recorded)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from kanol_archive import retention
from kanol_archive.__main__ import main
from kanol_archive.logbook import LogbookEntry, Operation
from kanol_archive.models import Archive
from kanol_archive.retention import RetentionRuleBase, verdict
from kanol_archive.seda.rules import DESTROY, KEEP
from kanol_archive.settings import ArchiveSettings
from kanol_common.delivery_models import OutboxMessage
from kanol_common.events.archive import ArchiveEliminated, EliminationProposed
from kanol_common.events.base import EventData
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.auth import TokenFactory

from .conftest import OTHER_SIREN, SIREN, Depositor, bearer, object_path

CONTRAT = 4
DELIBERATION = 1
LONG_AGO = date(2010, 1, 5)


def _runtime(app: FastAPI) -> ServiceRuntime:
    runtime: ServiceRuntime = app.state.runtime
    return runtime


def _archivist(tokens: TokenFactory, siren: str = SIREN) -> dict[str, str]:
    return bearer(tokens, siren, "archive:archivist archive:read")


async def _operations(app: FastAPI, archive_id: uuid.UUID | None = None) -> list[str]:
    async with _runtime(app).database.session() as session:
        query = select(LogbookEntry)
        if archive_id is not None:
            query = query.where(LogbookEntry.archive_id == str(archive_id))
        return [entry.operation for entry in (await session.exec(query)).all()]


async def _published(app: FastAPI, data_class: type[EventData]) -> list[Any]:
    async with _runtime(app).database.session() as session:
        messages = (await session.exec(select(OutboxMessage))).all()
    return [
        data_class.model_validate_json(message.payload)
        for message in messages
        if dict(message.headers).get("ce_type") == data_class.event_type
    ]


async def test_rules_are_listed_and_an_operators_change_is_logged(
    api: httpx.AsyncClient, tokens: TokenFactory, archive_app: FastAPI
) -> None:
    listed = await api.get("/v1/retention-rules", headers=bearer(tokens, SIREN))
    change = {
        "appraisal_rule": "APP-ACTES-CC",
        "duration_years": 5,
        "start_date": "decision",
        "final_action": "Destroy",
    }
    refused = await api.put("/v1/retention-rules/acte.CC", json=change, headers=_archivist(tokens))
    invalid = await api.put(
        "/v1/retention-rules/acte.CC",
        json={**change, "final_action": "Burn"},
        headers=bearer(tokens, SIREN, "archive:admin"),
    )
    changed = await api.put(
        "/v1/retention-rules/acte.CC", json=change, headers=bearer(tokens, SIREN, "archive:admin")
    )

    assert listed.status_code == 200
    kinds = {rule["kind"]: rule for rule in listed.json()}
    assert kinds["acte.CC"]["duration_years"] == 10
    assert kinds["acte.DE"]["final_action"] == KEEP
    assert {"acte.ar_acte", "pes.flow", "pes.acquit", "transfer"} <= set(kinds)
    assert refused.status_code == 403
    assert invalid.status_code == 400
    assert changed.status_code == 200, changed.text
    assert changed.json()["duration_years"] == 5
    assert archive_app.state.retention_rules.rules_for("acte.CC").appraisal_years == 5
    async with _runtime(archive_app).database.session() as session:
        entry = (
            await session.exec(
                select(LogbookEntry).where(LogbookEntry.operation == Operation.RULE_CHANGED)
            )
        ).one()
    assert entry.details["before"]["duration_years"] == 10
    assert entry.details["after"]["duration_years"] == 5


async def test_an_approved_elimination_destroys_content_no_other_archive_holds(
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_app: FastAPI,
    archive_settings: ArchiveSettings,
    make_archive: Depositor,
) -> None:
    alone, shared = b"%PDF contrat " + uuid.uuid4().bytes, b"%PDF annexe " + uuid.uuid4().bytes
    due = await make_archive(SIREN, alone, nature=CONTRAT, date_decision=LONG_AGO)
    due_shared = await make_archive(SIREN, shared, nature=CONTRAT, date_decision=LONG_AGO)
    kept = await make_archive(SIREN, shared, nature=DELIBERATION, date_decision=LONG_AGO)
    recent = await make_archive(SIREN, nature=CONTRAT, date_decision=date.today())
    store = archive_app.state.object_store

    proposals = await retention.sweep(_runtime(archive_app).database, store)
    mine = next(p for p in proposals if p.siren == SIREN)
    listed = await api.get("/v1/eliminations", headers=_archivist(tokens))
    detail = await api.get(f"/v1/eliminations/{mine.id}", headers=_archivist(tokens))
    approved = await api.post(
        f"/v1/eliminations/{mine.id}/approve",
        json={"reason": "Délai de conservation échu"},
        headers=_archivist(tokens),
    )
    again = await api.post(f"/v1/eliminations/{mine.id}/approve", headers=_archivist(tokens))

    assert listed.status_code == 200
    assert [item["state"] for item in listed.json()] == ["proposed"]
    proposed = {item["archive_id"] for item in detail.json()["archives"]}
    assert proposed == {str(due.archive.id), str(due_shared.archive.id)}
    assert str(kept.archive.id) not in proposed and str(recent.archive.id) not in proposed
    assert approved.status_code == 200, approved.text
    assert approved.json()["objects_removed"] == 1
    assert approved.json()["proposal"]["state"] == "approved"
    assert approved.json()["proposal"]["reason"] == "Délai de conservation échu"
    assert again.status_code == 409
    alone_sha256, shared_sha256 = (hashlib.sha256(c).hexdigest() for c in (alone, shared))
    assert not object_path(archive_settings, alone_sha256).exists()
    assert object_path(archive_settings, shared_sha256).exists()

    # The description and fingerprints stay; the content answers 410; the search skips it.
    described = await api.get(f"/v1/archives/{due.archive.id}", headers=bearer(tokens, SIREN))
    gone = await api.get(
        f"/v1/archives/{due.archive.id}/objects/{alone_sha256}", headers=bearer(tokens, SIREN)
    )
    still = await api.get(
        f"/v1/archives/{kept.archive.id}/objects/{shared_sha256}", headers=bearer(tokens, SIREN)
    )
    found = await api.get("/v1/archives?limit=200", headers=bearer(tokens, SIREN))
    assert described.status_code == 200
    assert described.json()["objects"][0]["sha512"] == hashlib.sha512(alone).hexdigest()
    assert gone.status_code == 410
    assert gone.json()["type"].endswith("archive-eliminated")
    assert still.status_code == 200 and still.content == shared
    assert str(due.archive.id) not in {item["id"] for item in found.json()["items"]}
    assert Operation.ARCHIVE_DESTROYED in await _operations(archive_app, due.archive.id)
    assert Operation.ELIMINATION_APPROVED in await _operations(archive_app)

    announced = [p for p in await _published(archive_app, EliminationProposed) if p.siren == SIREN]
    assert [set(p.archive_ids) for p in announced] == [proposed]
    eliminated = await _published(archive_app, ArchiveEliminated)
    assert {e.archive_id for e in eliminated if e.proposal_id == str(mine.id)} == proposed

    # A later sweep proposes none of them again.
    later = await retention.sweep(_runtime(archive_app).database, store)
    assert all(p.siren != SIREN for p in later)


async def test_a_refused_elimination_keeps_the_archives_and_records_why(
    api: httpx.AsyncClient,
    tokens: TokenFactory,
    archive_app: FastAPI,
    make_archive: Depositor,
) -> None:
    content = b"%PDF contrat refuse " + uuid.uuid4().bytes
    due = await make_archive(OTHER_SIREN, content, nature=CONTRAT, date_decision=LONG_AGO)
    store = archive_app.state.object_store
    await retention.sweep(_runtime(archive_app).database, store)
    async with _runtime(archive_app).database.session() as session:
        proposal = (await retention.proposals_of(session, OTHER_SIREN))[0]

    seen_by_other = await api.get(f"/v1/eliminations/{proposal.id}", headers=_archivist(tokens))
    approved_by_other = await api.post(
        f"/v1/eliminations/{proposal.id}/approve", headers=_archivist(tokens)
    )
    reader = await api.get("/v1/eliminations", headers=bearer(tokens, OTHER_SIREN))
    refused = await api.post(
        f"/v1/eliminations/{proposal.id}/refuse",
        json={"reason": "Contentieux en cours"},
        headers=_archivist(tokens, OTHER_SIREN),
    )
    download = await api.get(
        f"/v1/archives/{due.archive.id}/objects/{hashlib.sha256(content).hexdigest()}",
        headers=bearer(tokens, OTHER_SIREN),
    )

    assert seen_by_other.status_code == 404
    assert approved_by_other.status_code == 404
    assert reader.status_code == 403
    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert (body["state"], body["reason"]) == ("refused", "Contentieux en cours")
    assert [item["state"] for item in body["archives"]] == ["kept"]
    assert download.status_code == 200 and download.content == content
    assert Operation.ELIMINATION_REFUSED in await _operations(archive_app)
    later = await retention.sweep(_runtime(archive_app).database, store)
    assert all(p.siren != OTHER_SIREN for p in later)


def _archive(nature: int | None, decided: date | None, source_kind: str = "acte") -> Archive:
    return Archive(
        id=uuid.uuid4(),
        siren=SIREN,
        source_event_id="e",
        source_event_type="t",
        source_kind=source_kind,
        title="t",
        nature=nature,
        date_decision=decided,
        deposited_at=datetime(2020, 6, 1, tzinfo=UTC),
    )


def test_an_archive_is_due_when_all_its_rules_run_out() -> None:
    rules = dict(retention.DEFAULT_RULES)

    contract = verdict(_archive(CONTRAT, LONG_AGO), ["acte"], rules)
    with_ar_acte = verdict(_archive(CONTRAT, LONG_AGO), ["acte", "ar_acte"], rules)
    deliberation = verdict(_archive(DELIBERATION, LONG_AGO), ["acte"], rules)
    flow = verdict(_archive(None, None, "pes_flow"), ["pes_aller", "pes_acquit"], rules)
    leap = verdict(_archive(CONTRAT, date(2012, 2, 29)), ["acte"], rules)

    assert contract is not None and (contract.due_on, contract.final_action) == (
        date(2020, 1, 5),
        DESTROY,
    )
    # The ARActe runs ten years from the deposit: the archive waits for it.
    assert with_ar_acte is not None and with_ar_acte.due_on == date(2030, 6, 1)
    assert deliberation is not None and deliberation.final_action == KEEP
    assert flow is not None and (flow.kind, flow.final_action) == ("pes.flow", DESTROY)
    assert leap is not None and leap.due_on == date(2022, 2, 28)


def test_a_keep_rule_among_an_archives_rules_keeps_it() -> None:
    rules = dict(retention.DEFAULT_RULES)
    rules["acte.ar_acte"] = RetentionRuleBase(
        appraisal_rule="APP-ARACTE", duration_years=1, final_action=KEEP
    )

    found = verdict(_archive(CONTRAT, LONG_AGO), ["acte", "ar_acte"], rules)

    assert found is not None and found.final_action == KEEP


async def test_the_command_raises_the_proposals_due(
    archive_settings: ArchiveSettings,
    make_archive: Depositor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    siren = "200000198"
    await make_archive(siren, b"%PDF " + uuid.uuid4().bytes, nature=CONTRAT, date_decision=LONG_AGO)
    monkeypatch.setenv("KANOL_DATABASE_URL", archive_settings.resolved_database_url())
    monkeypatch.setenv("KANOL_DATA_DIR", str(archive_settings.data_dir))

    first = await asyncio.to_thread(main, ["propose-eliminations"])
    said_first = capsys.readouterr().out
    second = await asyncio.to_thread(main, ["propose-eliminations"])
    said_second = capsys.readouterr().out

    assert first == second == 0
    assert f"for {siren}" in said_first
    assert "0 proposal(s) raised" in said_second
