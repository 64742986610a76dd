"""The actes API: post an acte, list and follow it, answer the prefecture, cancel it, fetch
its documents; and the prefectures' classifications."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import classification, examples, messages, repository, service
from kanol_actes_pes.acte import ActeState
from kanol_actes_pes.classification import ClassificationCache
from kanol_actes_pes.errors import (
    ActeNotFound,
    AnnexesMismatch,
    DocumentNotFound,
    MessageNotFound,
    MetadataInvalid,
)
from kanol_actes_pes.messages import MessageSender
from kanol_actes_pes.models import (
    Acte,
    ActeDocument,
    ActeMessage,
    ActePage,
    ActePublic,
    AnnexeMetadata,
    CancelRequest,
    ClassificationPublic,
    HistoryPublic,
    MessagePublic,
    MessagesPublic,
    StateChangePublic,
    message_role,
)
from kanol_actes_pes.prefecture.port import GatewayError, PrefectureGateway
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.transmitter import Transmitter
from kanol_actes_pes.upload import check_pdf, read_acte_upload, read_answer_upload
from kanol_common.auth import Caller, require_scopes
from kanol_common.db import as_utc
from kanol_common.errors import Forbidden, ServiceUnavailable
from kanol_common.idempotency import (
    IdempotencyKey,
    commit_or_replay,
    remember,
    replay,
    request_fingerprint,
    scope_of,
)
from kanol_common.organisations import get_organisation, require_subscription
from kanol_common.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_CURSOR_LENGTH,
    MAX_PAGE_SIZE,
    PageCursor,
    clamp_limit,
    decode_optional,
    page_of,
)
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
    sender: MessageSender
    gateway: PrefectureGateway
    classifications: ClassificationCache = field(default_factory=ClassificationCache)


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

_UPLOAD_BODY = examples.UPLOAD_BODY


@router.post(
    "",
    status_code=201,
    response_model=ActePublic,
    summary="Post an acte, with its annexes, for transmission to the prefecture",
    openapi_extra=_UPLOAD_BODY,
    responses=examples.POST_ACTE_RESPONSES,
)
async def post_acte(
    request: Request,
    caller: Writer,
    session: SessionDep,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Check the acte, its PDF and annexes against the prefecture's classification, keep
    them, and queue the acte for transmission. The same ``Idempotency-Key`` replays."""
    settings = context.settings
    upload = await read_acte_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        settings.max_upload_bytes,
    )
    try:
        scope = scope_of(caller.siren, caller.client_id)
        fingerprint = request_fingerprint(
            "POST /v1/actes",
            upload.metadata,
            upload.pdf.sha256,
            *(annexe.sha256 for annexe in upload.annexes),
        )
        replayed = await replay(session, scope, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        metadata = service.parse_metadata(upload.metadata)
        nature = service.check_metadata(metadata, caller, settings, service.now_utc().date())
        service.check_annexes(metadata, len(upload.annexes))
        organisation = await get_organisation(session, caller.siren)
        departement = (
            metadata.departement
            or service.departement_of(organisation.departement if organisation else None)
            or settings.departement
        )
        current = await service.current_classification(
            session, context.store, context.classifications, departement
        )
        type_piece = service.check_classification(metadata, nature, current)
        await check_pdf(upload.pdf, "The acte's PDF")
        for position, annexe in enumerate(upload.annexes, start=1):
            await check_pdf(annexe, f"The annexe {position}")
        submission = await service.submit_acte(
            session,
            caller=caller,
            metadata=metadata,
            nature=nature,
            pdf=upload.pdf,
            settings=settings,
            store=context.store,
            annexes=upload.annexes,
            type_piece=type_piece,
            classification_date=current.date_classification,
            departement=departement,
            organisation=organisation,
        )
        acte = submission.acte
        body = service.acte_public(settings, acte, submission.documents)
        response = _json(body, 201, location=f"/v1/actes/{acte.id}")
        remember(session, scope, idempotency_key, fingerprint, response)
        response = await commit_or_replay(session, scope, idempotency_key, fingerprint, response)
    finally:
        upload.close()

    context.transmitter.wake()
    return response


@router.get(
    "",
    response_model=ActePage,
    summary="The organisation's actes, newest first, filtered, a page at a time",
    responses=examples.LIST_RESPONSES,
)
async def list_actes(
    caller: Reader,
    session: SessionDep,
    context: ContextDep,
    state: ActeState | None = None,
    nature: Annotated[int | None, Query(ge=1, le=6)] = None,
    numero_interne: Annotated[str | None, Query(max_length=15)] = None,
    objet: Annotated[
        str | None, Query(max_length=200, description="Text the objet contains (any case)")
    ] = None,
    date_decision_from: date | None = None,
    date_decision_to: date | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    overdue: Annotated[
        bool | None, Query(description="Only actes late for an acknowledgement or stuck")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> ActePage:
    filters = repository.ActeFilters(
        state=state.value if state else None,
        nature=nature,
        numero_interne=numero_interne,
        objet=objet,
        decided_from=date_decision_from,
        decided_to=date_decision_to,
        created_from=as_utc(created_from) if created_from else None,
        created_to=as_utc(created_to) if created_to else None,
        overdue=overdue,
    )
    after = decode_optional(cursor)
    limit = clamp_limit(limit)
    actes = await repository.list_actes(session, caller.siren, filters, after, limit + 1)
    items, next_cursor = page_of(actes, limit, lambda a: PageCursor(a.created_at, a.id))
    waiting = await service.hourly_volume_spent(session, context.settings)
    documents = await repository.documents_of_many(session, [acte.id for acte in items])
    public = [
        service.acte_public(
            context.settings, acte, documents[acte.id], waiting_for_capacity=waiting
        )
        for acte in items
    ]
    return ActePage(items=public, next_cursor=next_cursor)


@router.get(
    "/{acte_id}",
    response_model=ActePublic,
    summary="An acte and where it stands",
    responses=examples.GET_ACTE_RESPONSES,
)
async def get_acte(
    acte_id: uuid.UUID, caller: Reader, session: SessionDep, context: ContextDep
) -> ActePublic:
    acte = await _acte_of(session, acte_id, caller)
    return await _public(session, context, acte)


@router.get(
    "/{acte_id}/history",
    response_model=HistoryPublic,
    summary="Every state the acte went through, oldest first, and why",
    responses=examples.HISTORY_RESPONSES,
)
async def get_history(acte_id: uuid.UUID, caller: Reader, session: SessionDep) -> HistoryPublic:
    acte = await _acte_of(session, acte_id, caller)
    changes = await repository.history_of(session, acte.id)
    items = [
        StateChangePublic(
            state=change.to_state,
            previous_state=change.from_state,
            reason=change.reason,
            changed_at=as_utc(change.changed_at),
        )
        for change in changes
    ]
    return HistoryPublic(acte_id=acte.id, items=items)


@router.get(
    "/{acte_id}/documents/{role}",
    summary="The bytes of one of the acte's documents",
    response_class=StreamingResponse,
    responses=examples.DOCUMENT_RESPONSES,
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
    return service.acte_public(
        context.settings,
        acte,
        documents,
        waiting_for_capacity=await service.hourly_volume_spent(session, context.settings),
    )


def _json(body: SQLModel, status: int, location: str | None = None) -> Response:
    response = Response(
        body.model_dump_json().encode(), status_code=status, media_type="application/json"
    )
    if location is not None:
        response.headers["Location"] = location
    return response


@router.get(
    "/{acte_id}/messages",
    response_model=MessagesPublic,
    summary="The messages after the dépôt: the prefecture's letters, answers, cancellation",
    responses=examples.MESSAGES_RESPONSES,
)
async def get_messages(
    acte_id: uuid.UUID, caller: Reader, session: SessionDep, context: ContextDep
) -> MessagesPublic:
    acte = await _acte_of(session, acte_id, caller)
    messages = await repository.messages_of(session, acte.id)
    documents = await repository.documents_of(session, acte.id)
    items = [_message_public(context, message, documents) for message in messages]
    return MessagesPublic(acte_id=acte.id, items=items)


def _message_public(
    context: ActesContext, message: ActeMessage, documents: Sequence[ActeDocument]
) -> MessagePublic:
    own = message_role(message.number)
    return MessagePublic(
        id=message.id,
        number=message.number,
        direction=message.direction,
        code=message.code,
        kind=message.kind,
        state=message.state,
        date_courrier=message.date_courrier,
        date_depot=message.date_depot,
        texte=message.texte,
        in_reply_to=message.in_reply_to,
        created_at=as_utc(message.created_at),
        sent_at=as_utc(message.sent_at) if message.sent_at else None,
        acknowledged_at=as_utc(message.acknowledged_at) if message.acknowledged_at else None,
        last_error=message.last_error,
        documents=[
            service.document_public(context.settings, document)
            for document in documents
            if document.role == own or document.role.startswith(own + "_")
        ],
    )


@router.post(
    "/{acte_id}/cancel",
    status_code=202,
    response_model=ActePublic,
    summary="Cancel the acte: at once if not sent yet, else by an annulation (6-1)",
    openapi_extra=examples.CANCEL_BODY,
    responses=examples.CANCEL_RESPONSES,
)
async def cancel_acte(
    acte_id: uuid.UUID,
    request: Request,
    caller: Writer,
    session: SessionDep,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    raw = await request.body()
    scope = scope_of(caller.siren, caller.client_id)
    fingerprint = request_fingerprint("POST", request.url.path, raw)
    replayed = await replay(session, scope, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed
    cancel = _cancel_request(raw)
    acte = await _acte_of(session, acte_id, caller)
    await messages.request_cancellation(session, context.store, acte, cancel.reason)
    response = _json(await _public(session, context, acte), 202)
    remember(session, scope, idempotency_key, fingerprint, response)
    response = await commit_or_replay(session, scope, idempotency_key, fingerprint, response)
    context.sender.wake()
    return response


def _cancel_request(raw: bytes) -> CancelRequest:
    if not raw.strip():
        return CancelRequest()
    try:
        return CancelRequest.model_validate_json(raw)
    except ValueError as exc:
        raise MetadataInvalid("The body must be a JSON object with an optional reason") from exc


@router.post(
    "/{acte_id}/messages/{message_id}/answers",
    status_code=201,
    response_model=MessagePublic,
    summary="Answer a letter of the prefecture (2-2, 3-3, 3-4, 4-3, 4-4)",
    openapi_extra=examples.ANSWER_BODY,
    responses=examples.ANSWER_RESPONSES,
)
async def answer_message(
    acte_id: uuid.UUID,
    message_id: uuid.UUID,
    request: Request,
    caller: Writer,
    session: SessionDep,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    raw_metadata, files = await read_answer_upload(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        context.settings.max_upload_bytes,
    )
    try:
        scope = scope_of(caller.siren, caller.client_id)
        fingerprint = request_fingerprint(
            "POST", request.url.path, raw_metadata, *(file.sha256 for file in files)
        )
        replayed = await replay(session, scope, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        metadata = _answer_metadata(raw_metadata, len(files))
        acte = await _acte_of(session, acte_id, caller)
        letter = await repository.get_message(session, acte.id, message_id)
        if letter is None:
            raise MessageNotFound(f"The acte {acte_id} has no message {message_id}")
        for position, file in enumerate(files, start=1):
            await check_pdf(file, f"The document {position}")
        answer_files = [
            messages.AnswerFile(described.type_piece, file)
            for described, file in zip(metadata.documents, files, strict=True)
        ]
        sent = await messages.answer(
            session, context.store, acte, letter, metadata.code, answer_files
        )
        await session.flush()
        documents = await repository.documents_of(session, acte.id)
        response = _json(_message_public(context, sent, documents), 201)
        remember(session, scope, idempotency_key, fingerprint, response)
        response = await commit_or_replay(session, scope, idempotency_key, fingerprint, response)
    finally:
        for file in files:
            file.close()
    context.sender.wake()
    return response


class _AnswerMetadata(SQLModel):
    code: str
    documents: list[AnnexeMetadata]


def _answer_metadata(raw: bytes, received: int) -> _AnswerMetadata:
    try:
        metadata = _AnswerMetadata.model_validate_json(raw)
    except ValueError as exc:
        raise MetadataInvalid(
            "metadata must be JSON: {code: 3-4, documents: [{type_piece: 99_AU}]}"
        ) from exc
    if len(metadata.documents) != received:
        raise AnnexesMismatch(
            f"metadata describes {len(metadata.documents)} documents and the upload carries"
            f" {received} files 'documents'"
        )
    return metadata


classifications = APIRouter(prefix="/v1/classifications", tags=["classifications"])


@classifications.get(
    "/{departement}",
    response_model=ClassificationPublic,
    summary="The prefecture's current classification: matières and piece types by nature",
    responses=examples.CLASSIFICATION_RESPONSES,
)
async def get_classification(
    departement: Annotated[str, Path(pattern=r"^[09][0-9][0-9AB]$")],
    caller: Reader,
    session: SessionDep,
    context: ContextDep,
) -> ClassificationPublic:
    current = await service.current_classification(
        session, context.store, context.classifications, departement
    )
    return ClassificationPublic(
        departement=departement,
        date_classification=current.date_classification,
        matieres=current.matieres,
        types_piece={str(nature): list(codes) for nature, codes in current.types_piece.items()},
    )


@classifications.get(
    "/{departement}/document",
    summary="The RetourClassification (7-2) the current classification was read from",
    response_class=Response,
    responses=examples.CLASSIFICATION_DOCUMENT_RESPONSES,
)
async def get_classification_document(
    departement: Annotated[str, Path(pattern=r"^[09][0-9][0-9AB]$")],
    caller: AnyCaller,
    session: SessionDep,
    context: ContextDep,
) -> Response:
    stored = await repository.latest_classification(session, departement)
    content = await context.store.get(stored.sha256) if stored else classification.seed_bytes()
    return Response(content, media_type="application/xml")


@classifications.post(
    "/{departement}/refresh",
    status_code=202,
    summary="Ask the prefecture for its classification (7-1); the answer updates it",
    responses=examples.REFRESH_RESPONSES,
)
async def refresh_classification(
    departement: Annotated[str, Path(pattern=r"^[09][0-9][0-9AB]$")],
    caller: Writer,
    session: SessionDep,
    context: ContextDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    scope = scope_of(caller.siren, caller.client_id)
    fingerprint = request_fingerprint("POST refresh", departement)
    replayed = await replay(session, scope, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed
    stored = await repository.latest_classification(session, departement)
    held = stored.date_classification if stored else classification.seed().date_classification
    try:
        await messages.request_classification(context.gateway, context.settings, departement, held)
    except GatewayError as exc:
        raise PrefectureUnavailable(
            f"The prefecture's gateway did not take the 7-1: {exc}"
        ) from exc
    response = Response(
        json.dumps({"departement": departement, "held": held.isoformat()}).encode(),
        status_code=202,
        media_type="application/json",
    )
    remember(session, scope, idempotency_key, fingerprint, response)
    return await commit_or_replay(session, scope, idempotency_key, fingerprint, response)


class PrefectureUnavailable(ServiceUnavailable):
    type_slug = "prefecture-unavailable"
    title = "The prefecture's gateway is unavailable"
