"""archive's HTTP API: an organisation reads its archives and downloads their objects."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from kanol_archive.models import ArchiveDetail, ArchivePage
from kanol_archive.repository import ArchiveRepository
from kanol_archive.service import MAX_PAGE_SIZE, ArchiveService
from kanol_common.auth import Caller, require_scopes
from kanol_common.logging import get_logger
from kanol_common.runtime import DatabaseSession

log = get_logger(__name__)

READ_SCOPE = "archive:read"

router = APIRouter(prefix="/v1/archives", tags=["archives"])


def _service(request: Request, session: DatabaseSession) -> ArchiveService:
    return ArchiveService(ArchiveRepository(session), request.app.state.object_store)


Reader = Annotated[Caller, Depends(require_scopes(READ_SCOPE))]
Service = Annotated[ArchiveService, Depends(_service)]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256, hex")]


@router.get("", response_model=ArchivePage, summary="The organisation's archives, newest first")
async def list_archives(
    caller: Reader,
    service: Service,
    acte_id: Annotated[str | None, Query(max_length=64)] = None,
    identifiant_acte: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> ArchivePage:
    return await service.list_archives(
        caller.siren,
        acte_id=acte_id,
        identifiant_acte=identifiant_acte,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{archive_id}", response_model=ArchiveDetail, summary="One archive with its objects")
async def get_archive(archive_id: uuid.UUID, caller: Reader, service: Service) -> ArchiveDetail:
    return await service.get_archive(archive_id, caller.siren)


@router.get(
    "/{archive_id}/objects/{sha256}",
    summary="Download an archive object's content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_object(
    archive_id: uuid.UUID, sha256: Sha256, caller: Reader, service: Service
) -> StreamingResponse:
    item, chunks = await service.open_object(archive_id, caller.siren, sha256)

    # Every read of archived content is traced to a client: a trusted archive answers
    # for who saw what.
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
