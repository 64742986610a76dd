"""What happens to an acte: submission, each move of its lifecycle, and the events they cause.

Functions here take the caller's open session and never commit: the request or the
background task that called them commits, so a state change and its event (outbox row)
land together or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import classification, repository
from kanol_actes_pes.acte import (
    DEPARTEMENT_PATTERN,
    MATIERE_PATTERN,
    NUMERO_INTERNE_PATTERN,
    OBJET_MAX_LENGTH,
    TYPE_PIECE_PATTERN,
    ActeState,
    Nature,
    ensure_transition,
    identifiant_acte,
)
from kanol_actes_pes.classification import Classification, ClassificationCache
from kanol_actes_pes.errors import (
    AnnexesMismatch,
    DateDecisionInvalid,
    DepartementInvalid,
    MatiereInvalid,
    MatiereUnknown,
    MetadataInvalid,
    NatureInvalid,
    NumeroInterneInvalid,
    NumeroInterneTaken,
    ObjetInvalid,
    OtherOrganisation,
    SiretInvalid,
    TypePieceInvalid,
)
from kanol_actes_pes.models import (
    Acte,
    ActeDocument,
    ActeMetadata,
    ActePublic,
    ActeStateChange,
    DocumentPublic,
    DocumentRole,
    annexe_role,
)
from kanol_actes_pes.prefecture.transmission import MEDIA_TYPE_PDF, document_filename
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.upload import ReceivedPdf
from kanol_common import outbox
from kanol_common.auth import Caller
from kanol_common.db import as_utc, as_utc_or_none
from kanol_common.events.actes import (
    ActeAcknowledged,
    ActeRefused,
    ActeSubmitted,
    ActeTransmitted,
    AnnexeInfo,
)
from kanol_common.events.base import DocumentRef
from kanol_common.holds import hold
from kanol_common.logging import get_logger
from kanol_common.organisations import OrganisationProjection
from kanol_common.siren import is_valid_siret
from kanol_common.storage import LocalObjectStore, StoredObject
from kanol_common.tracing import extract_context, get_tracer, inject_headers

log = get_logger(__name__)
_tracer = get_tracer(__name__)


class StaleActe(Exception):
    """The acte was moved by someone else since it was read; the caller's move is void."""


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- Submission --------------------------------------------------------------------------


def parse_metadata(raw: bytes) -> ActeMetadata:
    try:
        return ActeMetadata.model_validate(json.loads(raw))
    except (ValueError, TypeError) as exc:
        errors: list[Any] = []
        if isinstance(exc, ValidationError):
            errors = [
                {"location": list(error["loc"]), "message": error["msg"]} for error in exc.errors()
            ]
        raise MetadataInvalid(
            "The field 'metadata' must be a JSON object with numero_interne, nature,"
            " matiere, objet and date_decision",
            errors=errors,
        ) from exc


def check_metadata(
    metadata: ActeMetadata, caller: Caller, settings: ActesPesSettings, today: date
) -> Nature:
    """Every rule an acte's metadata must follow before anything is stored; its nature."""
    if metadata.siren is not None and metadata.siren != caller.siren:
        raise OtherOrganisation(
            f"The SIREN {metadata.siren} is not the organisation of this token"
            f" ({caller.siren}): an acte is posted by its own organisation"
        )
    if metadata.siret is not None:
        _check_siret(metadata.siret, caller)
    try:
        nature = Nature(metadata.nature)
    except ValueError as exc:
        raise NatureInvalid(
            f"nature {metadata.nature} is unknown: 1 délibération, 2 arrêté réglementaire,"
            " 3 arrêté individuel, 4 contrat et convention, 5 document budgétaire, 6 autre"
        ) from exc
    if not NUMERO_INTERNE_PATTERN.fullmatch(metadata.numero_interne):
        raise NumeroInterneInvalid(
            f"numero_interne {metadata.numero_interne!r} must be 1 to 15 characters among"
            " A-Z, 0-9 and _"
        )
    _check_date_decision(metadata.date_decision, settings, today)
    if not MATIERE_PATTERN.fullmatch(metadata.matiere):
        raise MatiereInvalid(
            f"matiere {metadata.matiere!r} is not a classification code of 2 to 5 levels"
            " such as 1.1 or 7.1.3"
        )
    _check_objet(metadata.objet)
    if metadata.departement is not None and not DEPARTEMENT_PATTERN.fullmatch(metadata.departement):
        raise DepartementInvalid(
            f"departement {metadata.departement!r} is not an ACTES code such as 035, 02A, 974"
        )
    for name, code in _types_piece(metadata):
        if not TYPE_PIECE_PATTERN.fullmatch(code):
            raise TypePieceInvalid(
                f"{name}: type_piece {code!r} is not a piece type code such as 99_DE or 41_NC"
            )
    return nature


def _types_piece(metadata: ActeMetadata) -> list[tuple[str, str]]:
    named = [
        (f"annexes[{index}]", annexe.type_piece) for index, annexe in enumerate(metadata.annexes)
    ]
    if metadata.type_piece is not None:
        named.insert(0, ("acte", metadata.type_piece))
    return named


def check_annexes(metadata: ActeMetadata, received: int) -> None:
    """The metadata describes as many annexes as the upload carries files."""
    if len(metadata.annexes) != received:
        raise AnnexesMismatch(
            f"metadata describes {len(metadata.annexes)} annexes and the upload carries"
            f" {received} files 'annexes': give one {{type_piece}} per annexe, in order"
        )


def check_classification(
    metadata: ActeMetadata, nature: Nature, classification: Classification
) -> str:
    """The matière and the piece types against the prefecture's classification; the main
    document's piece type."""
    if not classification.has_matiere(metadata.matiere):
        raise MatiereUnknown(
            f"matiere {metadata.matiere} is not in the prefecture's classification of"
            f" {classification.date_classification.isoformat()}",
            classification_date=classification.date_classification.isoformat(),
            valid_matieres=sorted(classification.matieres),
        )
    allowed = classification.types_for(int(nature))
    type_piece = metadata.type_piece or nature.type_piece_principale
    for name, code in [("acte", type_piece), *_types_piece(metadata)]:
        if allowed and code not in allowed:
            raise TypePieceInvalid(
                f"{name}: type_piece {code} is not allowed for nature {int(nature)} by the"
                f" classification of {classification.date_classification.isoformat()}",
                valid_types_piece=list(allowed),
            )
    return type_piece


def idcl_codes(
    organisation: OrganisationProjection | None, settings: ActesPesSettings
) -> tuple[int, str]:
    """The arrondissement and nature code of the organisation in the envelope (IDCL):
    identity's when it holds them, else the settings' defaults."""
    arrondissement = settings.arrondissement
    nature_collectivite = settings.nature_collectivite
    if organisation is not None and organisation.arrondissement is not None:
        arrondissement = organisation.arrondissement
    if organisation is not None and organisation.nature_collectivite is not None:
        nature_collectivite = organisation.nature_collectivite
    return arrondissement, nature_collectivite


def departement_of(registered: str | None) -> str | None:
    """The ACTES code (``035``, ``02A``, ``974``) of a département as identity registered it
    (``35``, ``2A``...); ``None`` when it has none or it cannot be one."""
    if not registered:
        return None
    code = registered.strip().upper()
    if len(code) == 2:
        code = f"0{code}"
    return code if DEPARTEMENT_PATTERN.fullmatch(code) else None


def _check_siret(siret: str, caller: Caller) -> None:
    if not is_valid_siret(siret):
        raise SiretInvalid(f"siret {siret!r} is not a SIRET (14 digits, Luhn checksum)")
    if siret[:9] != caller.siren:
        raise OtherOrganisation(
            f"The SIRET {siret} is an establishment of {siret[:9]}, not of the organisation"
            f" of this token ({caller.siren}): an acte is posted by its own organisation"
        )


def _check_date_decision(decision: date, settings: ActesPesSettings, today: date) -> None:
    if decision > today:
        raise DateDecisionInvalid(
            f"date_decision {decision.isoformat()} is in the future (today is {today})"
        )
    oldest = today - timedelta(days=settings.max_decision_age_days)
    if decision < oldest:
        raise DateDecisionInvalid(
            f"date_decision {decision.isoformat()} is before {oldest.isoformat()}:"
            " too old to be transmitted"
        )


def _check_objet(objet: str) -> None:
    if not objet.strip():
        raise ObjetInvalid("objet must not be empty")
    if len(objet) > OBJET_MAX_LENGTH:
        raise ObjetInvalid(f"objet has {len(objet)} characters, at most {OBJET_MAX_LENGTH}")
    if any(ord(char) < 0x20 and char not in "\t\n\r" for char in objet):
        raise ObjetInvalid("objet contains control characters, which XML cannot carry")


@dataclass(frozen=True)
class Submission:
    """A submitted acte and its documents, as written: the response needs no query."""

    acte: Acte
    documents: list[ActeDocument]


async def submit_acte(
    session: AsyncSession,
    *,
    caller: Caller,
    metadata: ActeMetadata,
    nature: Nature,
    pdf: ReceivedPdf,
    settings: ActesPesSettings,
    store: LocalObjectStore,
    annexes: Sequence[ReceivedPdf] = (),
    type_piece: str | None = None,
    classification_date: date | None = None,
    departement: str | None = None,
    organisation: OrganisationProjection | None = None,
) -> Submission:
    """Record a checked acte as waiting for transmission, with its PDF and its event.

    The PDF is written to the object store last, once the rows are flushed, so that a
    refusal by the database (a numéro interne taken concurrently) stores nothing.
    """
    # A numéro interne already used is refused by the unique constraint at the flush
    # below, not by a query before it: the constraint decides anyway, concurrently too.
    now = now_utc()
    departement = departement or metadata.departement or settings.departement
    identifiant = identifiant_acte(
        departement, caller.siren, metadata.date_decision, metadata.numero_interne, nature
    )
    arrondissement, nature_collectivite = idcl_codes(organisation, settings)
    acte = Acte(
        siren=caller.siren,
        departement=departement,
        arrondissement=arrondissement,
        nature_collectivite=nature_collectivite,
        numero_interne=metadata.numero_interne,
        annee_decision=metadata.date_decision.year,
        nature=int(nature),
        matiere=metadata.matiere,
        objet=metadata.objet,
        date_decision=metadata.date_decision,
        identifiant_acte=identifiant,
        state=ActeState.WAITING_FOR_TRANSMISSION.value,
        traceparent=inject_headers().get("traceparent"),
        created_at=now,
        updated_at=now,
        type_piece=type_piece or nature.type_piece_principale,
        classification_date=classification_date,
        annexes_count=len(annexes),
    )
    document = ActeDocument(
        acte_id=acte.id,
        role=DocumentRole.ACTE.value,
        filename=document_filename(acte.type_piece or "", identifiant, 1),
        media_type=MEDIA_TYPE_PDF,
        sha256=pdf.sha256,
        size=pdf.size,
        created_at=now,
        type_piece=acte.type_piece,
        position=1,
    )
    annexe_documents = [
        ActeDocument(
            acte_id=acte.id,
            role=annexe_role(position),
            filename=document_filename(described.type_piece, identifiant, position + 1),
            media_type=MEDIA_TYPE_PDF,
            sha256=received.sha256,
            size=received.size,
            created_at=now,
            type_piece=described.type_piece,
            position=position + 1,
        )
        for position, (described, received) in enumerate(
            zip(metadata.annexes, annexes, strict=True), start=1
        )
    ]
    ensure_transition(ActeState.POSTED, ActeState.WAITING_FOR_TRANSMISSION)
    repository.add(
        session,
        acte,
        document,
        *annexe_documents,
        _state_change(acte.id, None, ActeState.POSTED, f"posted by {caller.client_id}", now),
        _state_change(acte.id, ActeState.POSTED, ActeState.WAITING_FOR_TRANSMISSION, None, now),
    )
    outbox.publish(
        session,
        ActeSubmitted(
            acte_id=str(acte.id),
            siren=acte.siren,
            numero_interne=acte.numero_interne,
            nature=acte.nature,
            matiere=acte.matiere,
            objet=acte.objet,
            date_decision=acte.date_decision,
            documents=tuple(document_ref(settings, d) for d in (document, *annexe_documents)),
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )
    await _flush(session, metadata)

    await hold(session, *(received.sha256 for received in (pdf, *annexes)))
    for received in (pdf, *annexes):
        stored = await store.put_file(received.file)
        _ensure_same(stored, received)
    log.info(
        "acte.submitted",
        acte_id=str(acte.id),
        tenant=acte.siren,
        identifiant=identifiant,
        annexes=len(annexes),
    )
    return Submission(acte, [document, *annexe_documents])


async def _flush(session: AsyncSession, metadata: ActeMetadata) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _numero_taken(metadata) from exc


def _numero_taken(metadata: ActeMetadata) -> NumeroInterneTaken:
    return NumeroInterneTaken(
        f"numero_interne {metadata.numero_interne} is already used by an acte of"
        f" {metadata.date_decision.year} of this organisation"
    )


def _ensure_same(stored: StoredObject, pdf: ReceivedPdf) -> None:
    if stored.sha256 != pdf.sha256 or stored.size != pdf.size:
        raise RuntimeError("the stored document differs from the upload it was read from")


# -- Lifecycle ---------------------------------------------------------------------------


@contextmanager
def in_trace_of(acte: Acte, name: str) -> Iterator[None]:
    """Work on an acte inside the trace of the request that posted it.

    The transmission and the reply happen in background tasks, minutes later; joining the
    submission's trace lets one trace show an acte from its POST to its archive deposit.
    """
    parent = extract_context({"traceparent": acte.traceparent}) if acte.traceparent else None
    attributes = {"kanol.acte_id": str(acte.id), "kanol.tenant": acte.siren}
    with _tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield


def _state_change(
    acte_id: uuid.UUID,
    current: ActeState | None,
    target: ActeState,
    reason: str | None,
    now: datetime,
) -> ActeStateChange:
    return ActeStateChange(
        acte_id=acte_id,
        from_state=current.value if current else None,
        to_state=target.value,
        reason=reason,
        changed_at=now,
    )


async def hourly_volume_spent(session: AsyncSession, settings: ActesPesSettings) -> bool:
    """Whether the last hour's volume towards the prefecture is used up: the actes waiting
    wait for capacity. Read from the database, so every replica answers the same."""
    sent = await repository.sent_since(session, now_utc() - timedelta(hours=1))
    return sent >= settings.prefecture_max_per_hour


async def change_state(
    session: AsyncSession,
    acte: Acte,
    target: ActeState,
    *,
    reason: str | None = None,
    **values: Any,
) -> ActeStateChange:
    """Move ``acte`` to ``target`` if the lifecycle allows it and nobody moved it first.

    Raises :class:`~kanol_actes_pes.acte.IllegalTransition` for a move the lifecycle
    forbids and :class:`StaleActe` when another process changed the state meanwhile.
    """
    current = ActeState(acte.state)
    ensure_transition(current, target)

    now = now_utc()
    values["updated_at"] = now
    if not await repository.compare_and_set_state(session, acte.id, current, target, values):
        raise StaleActe(f"acte {acte.id} is no longer {current.value}")

    change = _state_change(acte.id, current, target, reason, now)
    repository.add(session, change)
    # The row is updated already; keep the loaded object in step without a second UPDATE.
    set_committed_value(acte, "state", target.value)
    for name, value in values.items():
        set_committed_value(acte, name, value)
    return change


def publish_transmitted(session: AsyncSession, acte: Acte) -> None:
    assert acte.transmitted_at is not None
    outbox.publish(
        session,
        ActeTransmitted(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            transmitted_at=as_utc(acte.transmitted_at),
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )


def publish_acknowledged(
    session: AsyncSession,
    acte: Acte,
    documents: Sequence[ActeDocument],
    settings: ActesPesSettings,
) -> None:
    assert acte.acknowledged_at is not None and acte.date_reception is not None
    annexes = sorted(
        (d for d in documents if d.role.startswith("annexe_")), key=lambda d: d.position or 0
    )
    by_role = {document.role: document for document in documents}
    wanted = [
        by_role.get(DocumentRole.ACTE.value),
        *annexes,
        *(
            by_role.get(role.value)
            for role in (
                DocumentRole.ENVELOPPE,
                DocumentRole.MESSAGE,
                DocumentRole.ARCHIVE_TRANSMISSION,
                DocumentRole.AR_ACTE,
                DocumentRole.ACTE_TAMPONNE,
            )
        ),
    ]
    refs = tuple(document_ref(settings, document) for document in wanted if document is not None)
    outbox.publish(
        session,
        ActeAcknowledged(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            numero_interne=acte.numero_interne,
            nature=acte.nature,
            matiere=acte.matiere,
            objet=acte.objet,
            date_decision=acte.date_decision,
            date_reception=acte.date_reception,
            acknowledged_at=as_utc(acte.acknowledged_at),
            documents=refs,
            departement=acte.departement,
            classification_date=acte.classification_date,
            transmitted_at=as_utc_or_none(acte.transmitted_at),
            type_piece=acte.type_piece,
            annexes=tuple(
                AnnexeInfo(
                    position=(annexe.position or 2) - 1,
                    type_piece=annexe.type_piece or "",
                    role=annexe.role,
                    filename=annexe.filename,
                )
                for annexe in annexes
            ),
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )


def publish_refused(
    session: AsyncSession,
    acte: Acte,
    anomalie: ActeDocument | None = None,
    settings: ActesPesSettings | None = None,
) -> None:
    assert acte.refused_at is not None
    documents: tuple[DocumentRef, ...] = ()
    if anomalie is not None and settings is not None:
        documents = (document_ref(settings, anomalie),)
    outbox.publish(
        session,
        ActeRefused(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            nature_anomalie=acte.nature_anomalie or "",
            detail=acte.detail_anomalie or "",
            refused_at=as_utc(acte.refused_at),
            documents=documents,
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )


# -- What callers see --------------------------------------------------------------------


def document_uri(settings: ActesPesSettings, acte_id: uuid.UUID, role: str) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/actes/{acte_id}/documents/{role}"


def document_ref(settings: ActesPesSettings, document: ActeDocument) -> DocumentRef:
    return DocumentRef(
        role=document.role,
        uri=document_uri(settings, document.acte_id, document.role),
        sha256=document.sha256,
        size=document.size,
        media_type=document.media_type,
        filename=document.filename,
    )


def document_public(settings: ActesPesSettings, document: ActeDocument) -> DocumentPublic:
    return DocumentPublic(
        role=document.role,
        filename=document.filename,
        media_type=document.media_type,
        sha256=document.sha256,
        size=document.size,
        uri=document_uri(settings, document.acte_id, document.role),
        type_piece=document.type_piece,
        position=document.position,
    )


def acte_public(
    settings: ActesPesSettings,
    acte: Acte,
    documents: Sequence[ActeDocument],
    *,
    waiting_for_capacity: bool = False,
) -> ActePublic:
    return ActePublic(
        id=acte.id,
        siren=acte.siren,
        identifiant_acte=acte.identifiant_acte,
        numero_interne=acte.numero_interne,
        nature=acte.nature,
        nature_code=Nature(acte.nature).code,
        matiere=acte.matiere,
        objet=acte.objet,
        date_decision=acte.date_decision,
        state=ActeState(acte.state),
        created_at=as_utc(acte.created_at),
        updated_at=as_utc(acte.updated_at),
        transmitted_at=as_utc_or_none(acte.transmitted_at),
        acknowledged_at=as_utc_or_none(acte.acknowledged_at),
        refused_at=as_utc_or_none(acte.refused_at),
        date_reception=acte.date_reception,
        nature_anomalie=acte.nature_anomalie,
        detail_anomalie=acte.detail_anomalie,
        last_error=acte.last_error,
        documents=[
            document_public(settings, document)
            for document in documents
            if not document.role.startswith("message_")
        ],
        type_piece=acte.type_piece,
        classification_date=acte.classification_date,
        acknowledgement_overdue_at=as_utc_or_none(acte.acknowledgement_overdue_at),
        transmission_stuck_at=as_utc_or_none(acte.transmission_stuck_at),
        waiting_for_capacity=waiting_for_capacity
        and acte.state == ActeState.WAITING_FOR_TRANSMISSION.value,
        next_attempt_at=as_utc_or_none(acte.next_attempt_at),
        cancellation_requested_at=as_utc_or_none(acte.cancellation_requested_at),
        cancelled_at=as_utc_or_none(acte.cancelled_at),
    )


# -- Classification ----------------------------------------------------------------------


async def current_classification(
    session: AsyncSession,
    store: LocalObjectStore,
    cache: ClassificationCache,
    departement: str,
) -> Classification:
    """The département's latest classification; the shipped seed until its prefecture's."""
    cached = cache.get(departement)
    if cached is not None:
        return cached
    stored = await repository.latest_classification(session, departement)
    if stored is None:
        found = classification.seed()
    else:
        found = classification.read(await store.get(stored.sha256))
    cache.put(departement, found)
    return found
