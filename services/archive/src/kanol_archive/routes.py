"""archive's HTTP API for reading: search, descriptions and downloads, each access logged;
retention rules; the archivist's elimination decisions."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kanol_archive import retention, search
from kanol_archive.models import ArchiveDetail, ArchivePage
from kanol_archive.repository import ArchiveRepository
from kanol_archive.retention import (
    EliminationProposalBase,
    EliminationProposalPublic,
    RetentionRuleBase,
    RetentionRulePublic,
    RetentionRules,
)
from kanol_archive.seda.rules import DESTROY, KEEP
from kanol_archive.service import ArchiveService
from kanol_common.auth import Caller, require_scopes
from kanol_common.errors import BadRequest
from kanol_common.logging import get_logger
from kanol_common.pagination import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE
from kanol_common.runtime import DatabaseSession
from kanol_common.storage import ObjectStore

log = get_logger(__name__)

READ_SCOPE: Final = "archive:read"
ARCHIVIST_SCOPE: Final = "archive:archivist"
ADMIN_SCOPE: Final = "archive:admin"

router = APIRouter(prefix="/v1/archives", tags=["archives"])
rules_router = APIRouter(prefix="/v1/retention-rules", tags=["retention"])
eliminations_router = APIRouter(prefix="/v1/eliminations", tags=["retention"])

Reader = Annotated[Caller, Depends(require_scopes(READ_SCOPE))]
Archivist = Annotated[Caller, Depends(require_scopes(ARCHIVIST_SCOPE))]
Administrator = Annotated[Caller, Depends(require_scopes(ADMIN_SCOPE))]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256, hex")]


def _store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


Store = Annotated[ObjectStore, Depends(_store)]


@router.get("", response_model=ArchivePage, summary="Search the organisation's archives")
async def list_archives(
    caller: Reader,
    session: DatabaseSession,
    acte_id: Annotated[str | None, Query(max_length=64)] = None,
    identifiant_acte: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[
        str | None, Query(max_length=32, description=f"One of {', '.join(search.KINDS)}")
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="Words of the title")] = None,
    deposited_from: Annotated[date | None, Query(description="Deposited on or after")] = None,
    deposited_to: Annotated[date | None, Query(description="Deposited on or before")] = None,
    decided_from: Annotated[date | None, Query(description="Decision on or after")] = None,
    decided_to: Annotated[date | None, Query(description="Decision on or before")] = None,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> ArchivePage:
    """Newest deposit first, by cursor pages; eliminated archives are left out."""
    query = search.ArchiveQuery(
        acte_id=acte_id,
        identifiant_acte=identifiant_acte,
        kind=kind,
        text=q,
        deposited_from=deposited_from,
        deposited_to=deposited_to,
        decided_from=decided_from,
        decided_to=decided_to,
    )
    return await search.search(session, caller, query, cursor=cursor, limit=limit)


@router.get("/{archive_id}", response_model=ArchiveDetail, summary="One archive with its objects")
async def get_archive(
    archive_id: uuid.UUID, caller: Reader, session: DatabaseSession, store: Store
) -> ArchiveDetail:
    service = ArchiveService(ArchiveRepository(session), store)
    detail = await service.get_archive(archive_id, caller.siren)
    await search.log_read(session, caller, archive_id)
    return detail


@router.get(
    "/{archive_id}/objects/{sha256}",
    summary="Download an archive object's content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_object(
    archive_id: uuid.UUID, sha256: Sha256, caller: Reader, session: DatabaseSession, store: Store
) -> StreamingResponse:
    # The download is in the logbook (who, which object) before the first byte leaves.
    item, chunks = await search.open_object(session, store, caller, archive_id, sha256)
    log.info(
        "archive.object_downloaded",
        archive_id=str(archive_id),
        sha256=item.sha256,
        tenant=caller.siren,
        client_id=caller.client_id,
        token_id=caller.token_id,
    )
    headers = {
        "Content-Length": str(item.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(item.filename)}",
        "ETag": f'"{item.sha256}"',
    }
    return StreamingResponse(chunks, media_type=item.media_type, headers=headers)


# -- retention rules -----------------------------------------------------------------------


@rules_router.get("", response_model=list[RetentionRulePublic], summary="The retention rules")
async def list_rules(_: Reader, session: DatabaseSession) -> list[RetentionRulePublic]:
    rows = await retention.list_rules(session)
    return [RetentionRulePublic.model_validate(row, from_attributes=True) for row in rows]


@rules_router.put(
    "/{kind}", response_model=RetentionRulePublic, summary="Create or change a retention rule"
)
async def put_rule(
    kind: Annotated[str, Path(pattern=r"^[a-z]+\.[A-Za-z_]+$|^transfer$", max_length=64)],
    rule: RetentionRuleBase,
    caller: Administrator,
    session: DatabaseSession,
    request: Request,
) -> RetentionRulePublic:
    """A platform operator's change (scope archive:admin), logged with before and after."""
    if rule.final_action not in (KEEP, DESTROY):
        raise BadRequest("final_action is Keep or Destroy.")
    if rule.start_date not in (retention.START_DECISION, retention.START_DEPOSIT):
        raise BadRequest("start_date is decision or deposit.")
    row = await retention.change_rule(session, kind, rule, actor=caller.client_id)
    await session.commit()
    rules: RetentionRules | None = getattr(request.app.state, "retention_rules", None)
    if rules is not None:
        rules.remember(kind, rule)
    return RetentionRulePublic.model_validate(row, from_attributes=True)


# -- eliminations --------------------------------------------------------------------------


class Decision(BaseModel):
    reason: str | None = Field(default=None, max_length=2000, description="Why, for the record")


class ApprovalOutcome(BaseModel):
    proposal: EliminationProposalPublic
    objects_removed: int = Field(description="Objects removed from storage by this approval")


@eliminations_router.get(
    "", response_model=list[EliminationProposalBase], summary="The organisation's proposals"
)
async def list_proposals(caller: Archivist, session: DatabaseSession) -> list[object]:
    return list(await retention.proposals_of(session, caller.siren))


@eliminations_router.get(
    "/{proposal_id}", response_model=EliminationProposalPublic, summary="One proposal"
)
async def get_proposal(
    proposal_id: uuid.UUID, caller: Archivist, session: DatabaseSession
) -> EliminationProposalPublic:
    return await retention.proposal_detail(session, proposal_id, caller.siren)


@eliminations_router.post(
    "/{proposal_id}/approve",
    response_model=ApprovalOutcome,
    summary="Approve: destroy the archives' content, keep their description",
)
async def approve_proposal(
    proposal_id: uuid.UUID,
    caller: Archivist,
    session: DatabaseSession,
    store: Store,
    decision: Annotated[Decision | None, Body()] = None,
) -> ApprovalOutcome:
    reason = decision.reason if decision else None
    await retention.approve(
        session, proposal_id, caller.siren, actor=caller.client_id, reason=reason
    )
    await session.commit()
    # After the commit: no content leaves the store for a decision that did not hold.
    removed = await retention.remove_destroyed_objects(session, store)
    await session.commit()
    detail = await retention.proposal_detail(session, proposal_id, caller.siren)
    return ApprovalOutcome(proposal=detail, objects_removed=removed)


@eliminations_router.post(
    "/{proposal_id}/refuse",
    response_model=EliminationProposalPublic,
    summary="Refuse: keep the archives, record the decision",
)
async def refuse_proposal(
    proposal_id: uuid.UUID,
    caller: Archivist,
    session: DatabaseSession,
    decision: Annotated[Decision | None, Body()] = None,
) -> EliminationProposalPublic:
    reason = decision.reason if decision else None
    await retention.refuse(
        session, proposal_id, caller.siren, actor=caller.client_id, reason=reason
    )
    await session.commit()
    return await retention.proposal_detail(session, proposal_id, caller.siren)
