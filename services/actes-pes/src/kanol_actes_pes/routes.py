"""The actes API: post an acte, follow it, fetch its documents."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import repository, service
from kanol_actes_pes.errors import ActeNotFound, DocumentNotFound
from kanol_actes_pes.models import Acte, ActePublic, HistoryPublic, StateChangePublic
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.transmitter import Transmitter
from kanol_actes_pes.upload import check_pdf, read_acte_upload
from kanol_common.auth import Caller, require_scopes
from kanol_common.errors import Forbidden
from kanol_common.organisations import require_subscription
from kanol_common.runtime import DatabaseSession
from kanol_common.storage import CHUNK_SIZE, LocalObjectStore

SCOPE_WRITE = "actes:write"
SCOPE_READ = "actes:read"
SCOPE_DOCUMENTS = "documents:read"


@dataclass(frozen=True)
class ActesContext:
    """What the routes share, built once by ``create_app``."""

    settings: ActesPesSettings
    store: LocalObjectStore
    transmitter: Transmitter


def get_context(request: Request) -> ActesContext:
    context: ActesContext = request.app.state.actes
    return context


SessionDep = DatabaseSession
ContextDep = Annotated[ActesContext, Depends(get_context)]
# Submitting needs the organisation's subscription to actes (or its EPCI's): 403 otherwise.
Writer = Annotated[Caller, Depends(require_subscription("actes", SCOPE_WRITE))]
Reader = Annotated[Caller, Depends(require_scopes(SCOPE_READ))]
AnyCaller = Annotated[Caller, Depends(require_scopes())]

router = APIRouter(prefix="/v1/actes", tags=["actes"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "acte"],
                    "properties": {
                        "metadata": {
                            "type": "string",
                            "description": "JSON: numero_interne, nature (1-6), matiere,"
                            " objet, date_decision (YYYY-MM-DD), optionally siren",
                        },
                        "acte": {
                            "type": "string",
                            "format": "binary",
                            "description": "The acte's PDF (application/pdf)",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=ActePublic,
    summary="Post an acte for transmission to the prefecture",
    openapi_extra=_UPLOAD_BODY,
)
async def post_acte(
    request: Request,
    response: Response,
    caller: Writer,
    session: SessionDep,
    context: ContextDep,
) -> ActePublic:
    """Check the acte and its PDF, keep them, and queue the acte for transmission."""
    settings = context.settings
    upload = await read_acte_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        settings.max_upload_bytes,
    )
    try:
        metadata = service.parse_metadata(upload.metadata)
        nature = service.check_metadata(metadata, caller, settings, service.now_utc().date())
        await check_pdf(upload.pdf)
        submission = await service.submit_acte(
            session,
            caller=caller,
            metadata=metadata,
            nature=nature,
            pdf=upload.pdf,
            settings=settings,
            store=context.store,
        )
        await session.commit()
    finally:
        upload.pdf.close()

    context.transmitter.wake()
    acte = submission.acte
    response.headers["Location"] = f"/v1/actes/{acte.id}"
    return service.acte_public(settings, acte, submission.documents)


@router.get("/{acte_id}", response_model=ActePublic, summary="An acte and where it stands")
async def get_acte(
    acte_id: uuid.UUID, caller: Reader, session: SessionDep, context: ContextDep
) -> ActePublic:
    acte = await _acte_of(session, acte_id, caller)
    return await _public(session, context, acte)


@router.get(
    "/{acte_id}/history",
    response_model=HistoryPublic,
    summary="Every state the acte went through, oldest first, and why",
)
async def get_history(acte_id: uuid.UUID, caller: Reader, session: SessionDep) -> HistoryPublic:
    acte = await _acte_of(session, acte_id, caller)
    changes = await repository.history_of(session, acte.id)
    items = [
        StateChangePublic(
            state=change.to_state,
            previous_state=change.from_state,
            reason=change.reason,
            changed_at=service.as_utc(change.changed_at),
        )
        for change in changes
    ]
    return HistoryPublic(acte_id=acte.id, items=items)


@router.get(
    "/{acte_id}/documents/{role}",
    summary="The bytes of one of the acte's documents",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/pdf": {}, "application/xml": {}}}},
)
async def get_document(
    acte_id: uuid.UUID, role: str, caller: AnyCaller, session: SessionDep, context: ContextDep
) -> Response:
    """For the organisation that owns the acte (actes:read), or a service (documents:read)."""
    any_organisation = caller.has_scopes(SCOPE_DOCUMENTS)
    if not any_organisation and not caller.has_scopes(SCOPE_READ):
        raise Forbidden(
            f"Reading a document requires the scope {SCOPE_READ} or {SCOPE_DOCUMENTS}",
            missing_scopes=[SCOPE_READ],
        )
    found = await repository.document_of(session, acte_id, role)
    if found is None or (not any_organisation and found[0] != caller.siren):
        raise ActeNotFound(f"No acte {acte_id}")

    document = found[1]
    if document is None:
        raise DocumentNotFound(f"The acte {acte_id} has no document {role!r}")
    headers = {
        "Content-Length": str(document.size),
        "Content-Disposition": f'attachment; filename="{_safe_filename(document.filename)}"',
        "ETag": f'"{document.sha256}"',
    }
    if document.size <= CHUNK_SIZE:
        # Read whole in one worker thread; streaming costs a thread hop per chunk.
        content = await context.store.get(document.sha256)
        return Response(content, media_type=document.media_type, headers=headers)
    return StreamingResponse(
        context.store.iter_chunks(document.sha256), media_type=document.media_type, headers=headers
    )


def _safe_filename(name: str) -> str:
    # Reply file names come from the gateway: keep them from breaking the header.
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:200]


async def _acte_of(session: AsyncSession, acte_id: uuid.UUID, caller: Caller) -> Acte:
    acte = await repository.get_acte_of(session, acte_id, caller.siren)
    if acte is None:
        raise ActeNotFound(f"No acte {acte_id}")
    return acte


async def _public(session: AsyncSession, context: ActesContext, acte: Acte) -> ActePublic:
    documents = await repository.documents_of(session, acte.id)
    return service.acte_public(context.settings, acte, documents)
