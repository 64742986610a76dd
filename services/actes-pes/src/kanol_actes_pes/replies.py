"""The prefecture's messages after the ARActe: letters, acknowledgements of the authority's
answers, the cancellation's acknowledgement, and classifications.

Each is stored (its XML and its files as the acte's documents), recorded as an
:class:`~kanol_actes_pes.models.ActeMessage`, and published, in the receiver's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import classification, repository, service
from kanol_actes_pes.acte import ActeState
from kanol_actes_pes.models import (
    Acte,
    ActeDocument,
    ActeMessage,
    MessageDirection,
    MessageState,
    StoredClassification,
    message_role,
)
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import ReturnMessage
from kanol_actes_pes.prefecture.transmission import MEDIA_TYPE_XML
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common import outbox
from kanol_common.db import as_utc
from kanol_common.events.actes import (
    ActeCancelled,
    ActeCourrierSimpleReceived,
    ActeDefereReceived,
    ActeLettreObservationsReceived,
    ActePiecesComplementairesAnswered,
    ActePiecesComplementairesRequested,
    ClassificationUpdated,
)
from kanol_common.events.base import DocumentRef
from kanol_common.holds import put_held
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore

log = get_logger(__name__)

MESSAGE_KINDS = {
    "CourrierSimple": "courrier_simple",
    "DemandePieceComplementaire": "demande_pieces_complementaires",
    "LettreObservations": "lettre_observations",
    "DefereTA": "defere",
    "ARPieceComplementaire": "ar_pieces_complementaires",
    "ARReponseRejetLettreObservations": "ar_reponse_lettre_observations",
    "ARAnnulation": "ar_annulation",
}
# Which answers of the authority an acknowledgement of the prefecture settles.
ACKNOWLEDGED_ANSWERS = {"3-5": ("3-3", "3-4"), "4-5": ("4-3", "4-4")}


async def store_message_documents(
    session: AsyncSession,
    store: LocalObjectStore,
    acte: Acte,
    number: int,
    xml: tuple[str, bytes],
    files: Sequence[tuple[str, bytes, str, str | None]],
) -> list[ActeDocument]:
    """The message's XML as ``message_{n}`` and its files as ``message_{n}_{k}``."""
    documents: list[ActeDocument] = []
    entries = [(xml[0], xml[1], MEDIA_TYPE_XML, None), *files]
    stored_entries = await put_held(session, store, *(entry[1] for entry in entries))
    for index, (name, _, media_type, type_piece) in enumerate(entries):
        stored = stored_entries[index]
        document = ActeDocument(
            acte_id=acte.id,
            role=message_role(number, index or None),
            filename=name,
            media_type=media_type,
            sha256=stored.sha256,
            size=stored.size,
            created_at=service.now_utc(),
            type_piece=type_piece,
            position=index or None,
        )
        repository.add(session, document)
        documents.append(document)
    return documents


async def record_courrier(
    session: AsyncSession,
    store: LocalObjectStore,
    settings: ActesPesSettings,
    acte: Acte,
    courrier: actes_xml.CourrierPrefecture,
    message: ReturnMessage,
) -> ActeMessage:
    """A letter of the prefecture (2-1, 3-1, 4-1, 5-1), whatever the acte's state."""
    number = await repository.next_message_number(session, acte.id)
    now = service.now_utc()
    record = ActeMessage(
        acte_id=acte.id,
        number=number,
        direction=MessageDirection.FROM_PREFECTURE.value,
        code=courrier.code,
        kind=MESSAGE_KINDS[courrier.kind],
        state=MessageState.RECEIVED.value,
        date_courrier=courrier.date_courrier,
        date_depot=courrier.date_depot,
        texte=courrier.texte,
        prefecture_transmission_id=message.transmission_id,
        created_at=now,
        updated_at=now,
    )
    repository.add(session, record)
    files = {file.name: file for file in message.files}
    attached = [
        (name, files[name].content, files[name].media_type, None)
        for name in courrier.fichiers
        if name in files
    ]
    documents = await store_message_documents(
        session, store, acte, number, (message.filename, message.content), attached
    )
    _publish_courrier(session, settings, acte, record, courrier, documents)
    log.info(
        "acte.prefecture_message_received",
        acte_id=str(acte.id),
        tenant=acte.siren,
        code=courrier.code,
        kind=record.kind,
    )
    return record


def _publish_courrier(
    session: AsyncSession,
    settings: ActesPesSettings,
    acte: Acte,
    record: ActeMessage,
    courrier: actes_xml.CourrierPrefecture,
    documents: list[ActeDocument],
) -> None:
    common = {
        "acte_id": str(acte.id),
        "siren": acte.siren,
        "identifiant_acte": acte.identifiant_acte,
        "message_id": str(record.id),
        "code": record.code,
        "date_courrier": record.date_courrier,
        "received_at": as_utc(record.created_at),
        "documents": tuple(service.document_ref(settings, d) for d in documents),
    }
    event: (
        ActeCourrierSimpleReceived
        | ActePiecesComplementairesRequested
        | ActeLettreObservationsReceived
        | ActeDefereReceived
    )
    if courrier.kind == "DemandePieceComplementaire":
        event = ActePiecesComplementairesRequested(**common, description_pieces=courrier.texte)
    elif courrier.kind == "LettreObservations":
        event = ActeLettreObservationsReceived(**common, motif=courrier.texte)
    elif courrier.kind == "DefereTA":
        assert courrier.date_depot is not None
        event = ActeDefereReceived(
            **common, date_depot=courrier.date_depot, nature_illegalite=courrier.texte
        )
    else:
        event = ActeCourrierSimpleReceived(**common)
    outbox.publish(session, event, subject=str(acte.id), tenant=acte.siren)


async def record_accuse_reponse(
    session: AsyncSession,
    store: LocalObjectStore,
    settings: ActesPesSettings,
    acte: Acte,
    accuse: actes_xml.AccuseReponse,
    message: ReturnMessage,
) -> None:
    """The prefecture acknowledged an answer (3-5, 4-5): the answer is settled."""
    answer = await repository.outgoing_awaiting(session, acte.id, ACKNOWLEDGED_ANSWERS[accuse.code])
    number = await repository.next_message_number(session, acte.id)
    now = service.now_utc()
    record = ActeMessage(
        acte_id=acte.id,
        number=number,
        direction=MessageDirection.FROM_PREFECTURE.value,
        code=accuse.code,
        kind=MESSAGE_KINDS[accuse.kind],
        state=MessageState.RECEIVED.value,
        date_courrier=accuse.date_courrier,
        in_reply_to=answer.id if answer else None,
        prefecture_transmission_id=message.transmission_id,
        created_at=now,
        updated_at=now,
        acknowledged_at=now,
    )
    repository.add(session, record)
    documents = await store_message_documents(
        session, store, acte, number, (message.filename, message.content), []
    )
    if answer is not None:
        answer.state = MessageState.ACKNOWLEDGED.value
        answer.acknowledged_at = now
        answer.updated_at = now
        session.add(answer)
    if accuse.code == "3-5":
        outbox.publish(
            session,
            ActePiecesComplementairesAnswered(
                acte_id=str(acte.id),
                siren=acte.siren,
                identifiant_acte=acte.identifiant_acte,
                message_id=str(record.id),
                code=accuse.code,
                date_reception=accuse.date_reception,
                received_at=now,
                documents=tuple(service.document_ref(settings, d) for d in documents),
            ),
            subject=str(acte.id),
            tenant=acte.siren,
        )
    log.info("acte.answer_acknowledged", acte_id=str(acte.id), code=accuse.code)


async def record_annulation(
    session: AsyncSession,
    store: LocalObjectStore,
    settings: ActesPesSettings,
    acte: Acte,
    accuse: actes_xml.AccuseAnnulation,
    message: ReturnMessage,
) -> None:
    """The ARAnnulation (6-2): the acte is cancelled."""
    if acte.state != ActeState.CANCELLATION_REQUESTED.value:
        log.info("prefecture.message_ignored", acte_id=str(acte.id), state=acte.state, code="6-2")
        return
    request = await repository.outgoing_awaiting(session, acte.id, ("6-1",))
    number = await repository.next_message_number(session, acte.id)
    now = service.now_utc()
    repository.add(
        session,
        ActeMessage(
            acte_id=acte.id,
            number=number,
            direction=MessageDirection.FROM_PREFECTURE.value,
            code="6-2",
            kind=MESSAGE_KINDS["ARAnnulation"],
            state=MessageState.RECEIVED.value,
            in_reply_to=request.id if request else None,
            prefecture_transmission_id=message.transmission_id,
            created_at=now,
            updated_at=now,
            acknowledged_at=now,
        ),
    )
    documents = await store_message_documents(
        session, store, acte, number, (message.filename, message.content), []
    )
    if request is not None:
        request.state = MessageState.ACKNOWLEDGED.value
        request.acknowledged_at = now
        session.add(request)
    await service.change_state(
        session,
        acte,
        ActeState.CANCELLED,
        reason=f"annulation acknowledged by the prefecture ({message.filename})",
        cancelled_at=now,
    )
    outbox.publish(
        session,
        ActeCancelled(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            date_reception=accuse.date_reception,
            cancelled_at=now,
            documents=tuple(service.document_ref(settings, d) for d in documents),
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )
    log.info("acte.cancelled", acte_id=str(acte.id), tenant=acte.siren)


async def record_classification(
    session: AsyncSession,
    store: LocalObjectStore,
    settings: ActesPesSettings,
    received: actes_xml.ClassificationRecue,
    message: ReturnMessage,
) -> bool:
    """Keep a 7-2 as its département's current classification; ``False`` if already held."""
    departement = message.departement or settings.departement
    if await repository.classification_known(session, departement, received.date_classification):
        log.info("classification.unchanged", departement=departement)
        return False
    parsed = classification.from_root(received.root)
    (stored,) = await put_held(session, store, message.content)
    repository.add(
        session,
        StoredClassification(
            departement=departement,
            date_classification=received.date_classification,
            sha256=stored.sha256,
            size=stored.size,
            received_at=service.now_utc(),
        ),
    )
    outbox.publish(
        session,
        ClassificationUpdated(
            departement=departement,
            date_classification=received.date_classification,
            matieres=len(parsed.matieres),
            documents=(
                DocumentRef(
                    role="classification",
                    uri=classification_uri(settings, departement),
                    sha256=stored.sha256,
                    size=stored.size,
                    media_type=MEDIA_TYPE_XML,
                    filename=message.filename,
                ),
            ),
        ),
        subject=f"classification/{departement}",
        tenant=departement,
    )
    log.info(
        "classification.updated",
        departement=departement,
        date_classification=received.date_classification.isoformat(),
        matieres=len(parsed.matieres),
    )
    return True


def classification_uri(settings: ActesPesSettings, departement: str) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/classifications/{departement}/document"


def held_date(day: date | None) -> str:
    return day.isoformat() if day else "none"
