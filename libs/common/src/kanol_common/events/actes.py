"""Events published by actes-pes on ``actes.events``: the life of an acte."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from kanol_common.events.base import DocumentRef, EventData

TOPIC = "actes.events"


class ActeSubmitted(EventData):
    """An authority's software posted an acte; it waits for transmission."""

    event_type = "fr.kanol.actes.acte.submitted.v1"
    topic = TOPIC

    acte_id: str = Field(description="Kanol's id of the acte (UUID)")
    siren: str = Field(pattern=r"^[0-9]{9}$")
    numero_interne: str
    nature: int = Field(ge=1, le=6)
    matiere: str
    objet: str
    date_decision: date
    documents: tuple[DocumentRef, ...]


class ActeTransmitted(EventData):
    """The acte's transmission was accepted by the prefecture's gateway."""

    event_type = "fr.kanol.actes.acte.transmitted.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str = Field(description="{dept}-{SIREN}-{YYYYMMDD}-{NumeroInterne}-{nature}")
    transmitted_at: datetime


class AnnexeInfo(BaseModel):
    """An annexe of an acte: its place, its piece type code and its document's role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int = Field(ge=1)
    type_piece: str = Field(description="CodeTypePJ, e.g. 41_NC")
    role: str = Field(description="The role of its DocumentRef, e.g. annexe_1")
    filename: str


class ActeAcknowledged(EventData):
    """The prefecture answered with an accusé de réception (ARActe, message 1-2)."""

    event_type = "fr.kanol.actes.acte.acknowledged.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    numero_interne: str
    nature: int = Field(ge=1, le=6)
    matiere: str
    objet: str
    date_decision: date
    date_reception: date = Field(description="DateReception of the ARActe")
    acknowledged_at: datetime
    documents: tuple[DocumentRef, ...] = Field(
        description="acte (the PDF as posted), annexe_1..annexe_n, enveloppe, message,"
        " archive_transmission (the tar.gz sent), ar_acte, acte_tamponne (the PDF stamped"
        " with the acknowledgement)"
    )
    # Added compatibly after release: optional, absent from events published before.
    departement: str | None = Field(default=None, description="ACTES département code, e.g. 035")
    classification_date: date | None = Field(
        default=None, description="ClassificationDateVersion the acte was transmitted with"
    )
    transmitted_at: datetime | None = None
    annexes: tuple[AnnexeInfo, ...] = Field(
        default=(), description="The annexes, in order, with their piece type codes"
    )
    type_piece: str | None = Field(
        default=None, description="CodeTypePJ of the main document, e.g. 99_DE"
    )


class ActeRefused(EventData):
    """The prefecture answered with an anomalie (message 1-3)."""

    event_type = "fr.kanol.actes.acte.refused.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    nature_anomalie: str
    detail: str
    refused_at: datetime
    # Added compatibly after release: the AnomalieActe (1-3) itself.
    documents: tuple[DocumentRef, ...] = ()


class _PrefectureMessage(EventData):
    """Fields every message of the prefecture about one acte carries (not an event itself)."""

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    message_id: str = Field(description="Kanol's id of the message, under the acte")
    code: str = Field(description="ACTES message code, e.g. 2-1")
    date_courrier: date | None = Field(default=None, description="DateCourrierPref")
    received_at: datetime
    documents: tuple[DocumentRef, ...] = Field(description="The message's XML and its files")


class ActeCourrierSimpleReceived(_PrefectureMessage):
    """The prefecture sent a courrier simple about the acte (message 2-1)."""

    event_type = "fr.kanol.actes.courrier_simple.received.v1"
    topic = TOPIC


class ActePiecesComplementairesRequested(_PrefectureMessage):
    """The prefecture asks for more pieces (message 3-1); the authority answers 3-4 or 3-3."""

    event_type = "fr.kanol.actes.pieces_complementaires.requested.v1"
    topic = TOPIC

    description_pieces: str


class ActeLettreObservationsReceived(_PrefectureMessage):
    """The prefecture sent a lettre d'observations (message 4-1)."""

    event_type = "fr.kanol.actes.lettre_observations.received.v1"
    topic = TOPIC

    motif: str


class ActeDefereReceived(_PrefectureMessage):
    """The prefecture referred the acte to the administrative court (déféré, message 5-1)."""

    event_type = "fr.kanol.actes.defere.received.v1"
    topic = TOPIC

    date_depot: date
    nature_illegalite: str


class ActeAnswerSent(EventData):
    """The authority answered a message of the prefecture (2-2, 3-3, 3-4, 4-3 or 4-4)."""

    event_type = "fr.kanol.actes.answer.sent.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    message_id: str = Field(description="The answer's id")
    in_reply_to: str = Field(description="The id of the prefecture's message it answers")
    code: str = Field(description="ACTES message code of the answer, e.g. 3-4")
    sent_at: datetime
    documents: tuple[DocumentRef, ...]


class ActeMessageRefused(EventData):
    """The prefecture's gateway refused outright a message the authority sent after the
    dépôt (an answer, or a 6-1 annulation): sending it again would be refused again, so it
    is handed back. The letter it answered may be answered anew; after a refused 6-1 the
    acte is acknowledged again and its annulation may be asked anew."""

    event_type = "fr.kanol.actes.message.refused.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    message_id: str = Field(description="The refused message's id")
    code: str = Field(description="ACTES message code of the refused message, e.g. 3-4 or 6-1")
    in_reply_to: str | None = Field(
        default=None, description="The prefecture's message it answered, open again"
    )
    reason: str = Field(description="The gateway's reason")
    refused_at: datetime


class ActePiecesComplementairesAnswered(EventData):
    """The prefecture acknowledged the authority's answer to its request (message 3-5)."""

    event_type = "fr.kanol.actes.pieces_complementaires.answered.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    message_id: str
    code: str
    date_reception: date
    received_at: datetime
    documents: tuple[DocumentRef, ...]


class ActeCancellationRequested(EventData):
    """The authority asked to cancel the acte's transmission (message 6-1 queued)."""

    event_type = "fr.kanol.actes.cancellation.requested.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    requested_at: datetime
    reason: str | None = None


class ActeCancelled(EventData):
    """The prefecture acknowledged the cancellation (ARAnnulation, message 6-2)."""

    event_type = "fr.kanol.actes.acte.cancelled.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    date_reception: date
    cancelled_at: datetime
    documents: tuple[DocumentRef, ...]


class ActeAcknowledgementOverdue(EventData):
    """A transmitted acte has had no acknowledgement for longer than the allowed delay."""

    event_type = "fr.kanol.actes.acknowledgement.overdue.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    transmitted_at: datetime
    overdue_since: datetime
    allowed_seconds: float


class ActeTransmissionStuck(EventData):
    """An acte stays ``transmitting`` (the gateway unreachable) beyond the allowed delay."""

    event_type = "fr.kanol.actes.transmission.stuck.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    transmitting_since: datetime
    attempts: int
    last_error: str | None = None


class ClassificationUpdated(EventData):
    """A prefecture's classification (matières, natures, piece types) changed (message 7-2)."""

    event_type = "fr.kanol.actes.classification.updated.v1"
    topic = TOPIC

    departement: str
    date_classification: date
    matieres: int = Field(ge=0, description="How many matière codes it holds")
    documents: tuple[DocumentRef, ...] = Field(description="The RetourClassification")
