"""The PES API: post a PES_Aller flow, follow it, fetch it, its acknowledgement, the returns."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.pes import repository, service
from kanol_actes_pes.pes.errors import (
    PesDocumentNotFound,
    PesFlowNotFound,
    PesRetourNotFound,
)
from kanol_actes_pes.pes.models import (
    PesDocumentRole,
    PesFlow,
    PesFlowPage,
    PesFlowPublic,
    PesFlowState,
    PesHistoryPublic,
    PesRetourPage,
    PesRetourPublic,
    PesStateChangePublic,
)
from kanol_actes_pes.pes.monitor import overdue_cutoff
from kanol_actes_pes.pes.signature import TrustAnchors
from kanol_actes_pes.pes.transmitter import PesTransmitter
from kanol_actes_pes.pes.upload import read_flow_upload
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.auth import Caller, require_scopes
from kanol_common.db import as_utc
from kanol_common.errors import Forbidden
from kanol_common.idempotency import (
    IdempotencyKey,
    commit_or_replay,
    remember,
    replay,
    request_fingerprint,
    scope_of,
)
from kanol_common.organisations import require_subscription
from kanol_common.pagination import PageCursor, decode_optional, page_of
from kanol_common.runtime import DatabaseSession
from kanol_common.storage import LocalObjectStore

SCOPE_WRITE = "pes:write"
SCOPE_READ = "pes:read"
SCOPE_DOCUMENTS = "documents:read"
DEFAULT_PAGE = 50
MAX_PAGE = 200


@dataclass(frozen=True)
class PesContext:
    """What the routes share, built once by ``create_app``."""

    settings: ActesPesSettings
    store: LocalObjectStore
    anchors: TrustAnchors
    transmitter: PesTransmitter


def get_context(request: Request) -> PesContext:
    context: PesContext = request.app.state.pes
    return context


ContextDep = Annotated[PesContext, Depends(get_context)]
# Posting needs the organisation's PES subscription; reads and service fetches do not.
Writer = Annotated[Caller, Depends(require_subscription("pes", SCOPE_WRITE))]
Reader = Annotated[Caller, Depends(require_scopes(SCOPE_READ))]
AnyCaller = Annotated[Caller, Depends(require_scopes())]

router = APIRouter(prefix="/v1/pes", tags=["pes"])

# -- OpenAPI examples ------------------------------------------------------------------------

_FLOW_ID = "0f6d8a52-4f0e-4c59-9d0a-5b8f3c1e2a77"
_FLOW_EXAMPLE: dict[str, Any] = {
    "id": _FLOW_ID,
    "siren": "213502388",
    "id_coll": "21350238800019",
    "nom_fic": "PESALR2_21350238800019_240312_001",
    "typ_fic": "PESALR1",
    "cod_col": "244",
    "cod_bud": "00",
    "id_post": "035000",
    "libelle_col_bud": "Commune de Rennes - budget principal",
    "dte_str": "2024-03-12",
    "sha256": "57bb6f6638dfab19abc57f0d1587a55b32b46cbea64b2b78ec27841a692c0b7b",
    "size": 222043,
    "signed": True,
    "signer_trusted": True,
    "signatures": [
        {
            "signature_id": "SIG1",
            "signed_ids": ["N10025"],
            "signer_subject": "CN=Jeanne Le Gall,O=Commune de Rennes,C=FR",
            "signer_serial": "120612209071880369374275",
            "signing_time": "2024-03-12T09:09:14Z",
            "trusted_chain": True,
            "revocation_checked": True,
        }
    ],
    "state": "refused",
    "helios_id": "67b2eca6-4148-49de-b4ce-d7c0326d75ae",
    "last_error": None,
    "date_ack": "2024-03-12",
    "acquit_overdue": False,
    "acquit_errors": [
        {
            "number": 1,
            "code": "ERREUR_DOUBLON_PIECE",
            "label": "Pièce déjà reçue",
            "domaine": "5",
            "piece": "1303",
        }
    ],
    "created_at": "2024-03-12T09:10:02Z",
    "updated_at": "2024-03-12T09:10:05Z",
    "transmitted_at": "2024-03-12T09:10:03Z",
    "acknowledged_at": None,
    "refused_at": "2024-03-12T09:10:05Z",
    "documents": [
        {
            "role": "pes_aller",
            "filename": "PESALR2_21350238800019_240312_001.xml",
            "media_type": "application/xml",
            "sha256": "57bb6f6638dfab19abc57f0d1587a55b32b46cbea64b2b78ec27841a692c0b7b",
            "size": 222043,
            "uri": f"https://actes.kanol.fr/v1/pes/flows/{_FLOW_ID}/flow",
        }
    ],
}


def _problem(slug: str, status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "description": title,
        "content": {
            "application/problem+json": {
                "example": {
                    "type": f"https://kanol.fr/problems/{slug}",
                    "title": title,
                    "status": status,
                    "detail": detail,
                }
            }
        },
    }


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _problem("pes-flow-not-found", 404, "No such PES flow", f"No flow {_FLOW_ID}")
}
_JSON_OK = {"content": {"application/json": {"example": _FLOW_EXAMPLE}}}

_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "application/xml": {
                "schema": {"type": "string", "format": "binary"},
                "example": '<?xml version="1.0" encoding="ISO-8859-1"?>\n<n:PES_Aller'
                ' xmlns:n="http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/aller">'
                "<Enveloppe>...</Enveloppe><EnTetePES>...</EnTetePES>...</n:PES_Aller>",
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["flow"],
                    "properties": {
                        "flow": {
                            "type": "string",
                            "format": "binary",
                            "description": "The PES_Aller file",
                        }
                    },
                }
            },
        },
    }
}

# -- Routes ----------------------------------------------------------------------------------


@router.post(
    "/flows",
    status_code=201,
    response_model=PesFlowPublic,
    response_class=Response,
    summary="Post a PES_Aller flow for Hélios",
    openapi_extra=_UPLOAD,
    responses={
        201: {
            "content": {"application/json": {"example": {**_FLOW_EXAMPLE, "state": "submitted"}}}
        },
        403: _problem(
            "pes-other-organisation",
            403,
            "The flow's IdColl is not an establishment of the caller's organisation",
            "IdColl 75580064600099 is an establishment of the SIREN 755800646, not of the"
            " organisation of this token (213502388)",
        ),
        409: _problem(
            "pes-flow-duplicate", 409, "This flow was already posted", "A flow named X was ..."
        ),
        413: _problem("pes-too-large", 413, "The PES flow is too large", "limit 104857600"),
        415: _problem("pes-not-xml", 415, "The flow is not sent as XML", "not text/plain"),
        422: _problem(
            "pes-signature-invalid",
            422,
            "A signature of the PES flow does not verify",
            "Signature SIG1: the content of #N10025 changed after signing (digest mismatch)",
        ),
    },
)
async def post_flow(
    request: Request,
    caller: Writer,
    session: DatabaseSession,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Check the flow (safe parsing, PES V2 schema, organisation, signatures) and queue it.

    Refusals (each a problem, nothing stored, nothing published): ``pes-not-xml`` 415,
    ``pes-too-large`` 413, ``pes-upload-malformed`` 400, ``pes-encoding-invalid``,
    ``pes-xml-malformed``, ``pes-xml-forbidden`` (DTD, entities), ``pes-not-pes-aller``,
    ``pes-schema-invalid`` (with ``errors``), ``pes-signature-invalid``,
    ``pes-signer-untrusted``, ``pes-unsigned-refused`` (all 422),
    ``pes-other-organisation`` 403, ``pes-flow-duplicate`` 409. An unsigned flow is
    accepted with ``signed`` false unless the platform requires signatures. The same
    ``Idempotency-Key`` with the same file replays the first answer.
    """
    settings = context.settings
    upload = await read_flow_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.headers.get("content-disposition"),
        request.stream(),
        settings.pes_max_upload_bytes,
    )
    scope = scope_of(caller.siren, caller.client_id)
    fingerprint = request_fingerprint(
        "POST", request.url.path, hashlib.sha256(upload.content).hexdigest()
    )
    replayed = await replay(session, scope, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed

    # Parsing, the schema and the signatures are CPU work: off the event loop.
    checked = await asyncio.to_thread(
        service.check_flow,
        upload.content,
        caller.siren,
        context.anchors,
        accept_unsigned=settings.pes_accept_unsigned,
        filename=upload.filename,
    )
    flow, document = await service.submit_flow(
        session, caller=caller, checked=checked, settings=settings, store=context.store
    )
    public = service.flow_public(settings, flow, [document])
    response = Response(
        public.model_dump_json().encode(),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/pes/flows/{flow.id}"},
    )
    remember(session, scope, idempotency_key, fingerprint, response)
    response = await commit_or_replay(session, scope, idempotency_key, fingerprint, response)
    context.transmitter.wake()
    return response


@router.get(
    "/flows",
    response_model=PesFlowPage,
    summary="The organisation's flows, newest first, filtered, a page at a time",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"items": [_FLOW_EXAMPLE], "next_cursor": "WyIyMDI0LTAzLTEy..."}
                }
            }
        },
        400: _problem("invalid-cursor", 400, "Invalid pagination cursor", "x"),
    },
)
async def list_flows(
    caller: Reader,
    session: DatabaseSession,
    context: ContextDep,
    state: PesFlowState | None = None,
    id_coll: Annotated[str | None, Query(pattern=r"^[0-9]{14}$")] = None,
    nom_fic: Annotated[str | None, Query(max_length=255)] = None,
    dte_str: date | None = None,
    created_from: datetime | None = None,
    created_until: datetime | None = None,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PesFlowPage:
    """Filters combine; ``next_cursor`` (when more remain) is passed back as ``cursor``.

    ``overdue=true``: the flows deposited at Hélios still without an acknowledgement after
    the platform's delay (``acquit_overdue`` true).
    """
    filters = repository.FlowFilters(
        state=None if state is None else state.value,
        id_coll=id_coll,
        nom_fic=nom_fic,
        created_from=created_from,
        created_until=created_until,
        dte_str=dte_str,
        overdue_before=overdue_cutoff(context.settings, service.now_utc()) if overdue else None,
    )
    flows = await repository.list_flows(
        session, caller.siren, filters, decode_optional(cursor), limit + 1
    )
    page, next_cursor = page_of(flows, limit, lambda flow: PageCursor(flow.created_at, flow.id))
    items = []
    for flow in page:
        documents = await repository.documents_of(session, flow.id)
        items.append(service.flow_public(context.settings, flow, documents))
    return PesFlowPage(items=items, next_cursor=next_cursor)


@router.get(
    "/flows/{flow_id}",
    response_model=PesFlowPublic,
    summary="A flow and where it stands",
    responses={200: _JSON_OK, **_NOT_FOUND},
)
async def get_flow(
    flow_id: uuid.UUID, caller: Reader, session: DatabaseSession, context: ContextDep
) -> PesFlowPublic:
    flow = await _flow_of(session, flow_id, caller)
    documents = await repository.documents_of(session, flow.id)
    return service.flow_public(context.settings, flow, documents)


@router.get(
    "/flows/{flow_id}/history",
    response_model=PesHistoryPublic,
    summary="Every state the flow went through, oldest first, and why",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "flow_id": _FLOW_ID,
                        "items": [
                            {
                                "state": "submitted",
                                "previous_state": None,
                                "reason": "posted by client-rennes",
                                "changed_at": "2024-03-12T09:10:02Z",
                            },
                            {
                                "state": "transmitting",
                                "previous_state": "submitted",
                                "reason": "claimed for deposit at Hélios",
                                "changed_at": "2024-03-12T09:10:02Z",
                            },
                        ],
                    }
                }
            }
        },
        **_NOT_FOUND,
    },
)
async def get_history(
    flow_id: uuid.UUID, caller: Reader, session: DatabaseSession
) -> PesHistoryPublic:
    flow = await _flow_of(session, flow_id, caller)
    changes = await repository.history_of(session, flow.id)
    return PesHistoryPublic(
        flow_id=flow.id,
        items=[
            PesStateChangePublic(
                state=change.to_state,
                previous_state=change.from_state,
                reason=change.reason,
                changed_at=as_utc(change.changed_at),
            )
            for change in changes
        ],
    )


_XML_OK = {
    "content": {
        "application/xml": {
            "example": '<?xml version="1.0" encoding="ISO-8859-1"?>\n<n:PES_ACQUIT ...>'
        }
    }
}


@router.get(
    "/flows/{flow_id}/flow",
    summary="The PES_Aller file as posted",
    response_class=Response,
    responses={200: _XML_OK, **_NOT_FOUND},
)
async def get_flow_file(
    flow_id: uuid.UUID, caller: AnyCaller, session: DatabaseSession, context: ContextDep
) -> Response:
    """For the owning organisation (pes:read), or a service (documents:read)."""
    return await _document(flow_id, PesDocumentRole.PES_ALLER.value, caller, session, context)


@router.get(
    "/flows/{flow_id}/acquit",
    summary="Hélios's acknowledgement (PES_ACQUIT) of the flow",
    response_class=Response,
    responses={
        200: _XML_OK,
        404: _problem(
            "pes-document-not-found",
            404,
            "No such document for this PES flow",
            "The flow has no pes_acquit yet",
        ),
    },
)
async def get_acquit_file(
    flow_id: uuid.UUID, caller: AnyCaller, session: DatabaseSession, context: ContextDep
) -> Response:
    """For the owning organisation (pes:read), or a service (documents:read)."""
    return await _document(flow_id, PesDocumentRole.PES_ACQUIT.value, caller, session, context)


_RETOUR_EXAMPLE = {
    "id": "2b1c7f0e-9f59-4a43-8d0b-62f1d8d9c6b1",
    "siren": "213502388",
    "id_coll": "21350238800019",
    "nom_fic": "PES2R_DEP_P_244_00_035000_20240313_20240313101500",
    "dte_str": "2024-03-13",
    "filename": "PES2R_DEP_P_244_00_035000_20240313_20240313101500.xml",
    "sha256": "8d2f5e1c3b6a4f9e0d7c2b1a5e4f3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e",
    "size": 812,
    "received_at": "2024-03-13T10:15:00Z",
    "uri": "https://actes.kanol.fr/v1/pes/retours/2b1c7f0e-9f59-4a43-8d0b-62f1d8d9c6b1/content",
}


@router.get(
    "/retours",
    response_model=PesRetourPage,
    summary="The PES_Retour files Hélios returned to the organisation, newest first",
    responses={
        200: {
            "content": {
                "application/json": {"example": {"items": [_RETOUR_EXAMPLE], "next_cursor": None}}
            }
        },
        400: _problem("invalid-cursor", 400, "Invalid pagination cursor", "x"),
    },
)
async def list_retours(
    caller: Reader,
    session: DatabaseSession,
    context: ContextDep,
    id_coll: Annotated[str | None, Query(pattern=r"^[0-9]{14}$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PesRetourPage:
    retours = await repository.list_retours(
        session, caller.siren, id_coll, decode_optional(cursor), limit + 1
    )
    page, next_cursor = page_of(
        retours, limit, lambda retour: PageCursor(retour.received_at, retour.id)
    )
    return PesRetourPage(
        items=[service.retour_public(context.settings, retour) for retour in page],
        next_cursor=next_cursor,
    )


@router.get(
    "/retours/{retour_id}",
    response_model=PesRetourPublic,
    summary="One PES_Retour's description",
    responses={
        200: {"content": {"application/json": {"example": _RETOUR_EXAMPLE}}},
        404: _problem("pes-retour-not-found", 404, "No such PES_Retour", "No retour x"),
    },
)
async def get_retour(
    retour_id: uuid.UUID, caller: Reader, session: DatabaseSession, context: ContextDep
) -> PesRetourPublic:
    retour = await repository.get_retour(session, retour_id)
    if retour is None or retour.siren != caller.siren:
        raise PesRetourNotFound(f"No retour {retour_id}")
    return service.retour_public(context.settings, retour)


@router.get(
    "/retours/{retour_id}/content",
    summary="The PES_Retour file",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"example": "<n:PES_Retour ...>"}}},
        404: _problem("pes-retour-not-found", 404, "No such PES_Retour", "No retour x"),
    },
)
async def get_retour_content(
    retour_id: uuid.UUID, caller: AnyCaller, session: DatabaseSession, context: ContextDep
) -> Response:
    """For the owning organisation (pes:read), or a service (documents:read)."""
    any_organisation = _may_read_documents(caller)
    retour = await repository.get_retour(session, retour_id)
    if retour is None or (not any_organisation and retour.siren != caller.siren):
        raise PesRetourNotFound(f"No retour {retour_id}")
    content = await context.store.get(retour.sha256)
    return _xml_response(content, retour.filename, retour.sha256)


# -- Helpers ---------------------------------------------------------------------------------


async def _flow_of(session: AsyncSession, flow_id: uuid.UUID, caller: Caller) -> PesFlow:
    flow = await repository.get_flow_of(session, flow_id, caller.siren)
    if flow is None:
        raise PesFlowNotFound(f"No flow {flow_id}")
    return flow


def _may_read_documents(caller: Caller) -> bool:
    """Whether the caller reads any organisation's documents; refuses one who reads none."""
    if caller.has_scopes(SCOPE_DOCUMENTS):
        return True
    if not caller.has_scopes(SCOPE_READ):
        raise Forbidden(
            f"Reading a document requires the scope {SCOPE_READ} or {SCOPE_DOCUMENTS}",
            missing_scopes=[SCOPE_READ],
        )
    return False


async def _document(
    flow_id: uuid.UUID, role: str, caller: Caller, session: AsyncSession, context: PesContext
) -> Response:
    any_organisation = _may_read_documents(caller)
    found = await repository.document_of(session, flow_id, role)
    if found is None or (not any_organisation and found[0] != caller.siren):
        raise PesFlowNotFound(f"No flow {flow_id}")
    document = found[1]
    if document is None:
        raise PesDocumentNotFound(f"The flow {flow_id} has no {role} yet")
    content = await context.store.get(document.sha256)
    return _xml_response(content, document.filename, document.sha256)


def _xml_response(content: bytes, filename: str, sha256: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", filename)[:200]
    headers = {"Content-Disposition": f'attachment; filename="{safe}"', "ETag": f'"{sha256}"'}
    return Response(content, media_type="application/xml", headers=headers)
