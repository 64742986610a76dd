"""The acte's tables and the shapes the API shows of them.

SQLModel families: ``Acte`` (table) and ``ActePublic`` (what callers see: no transmission
bookkeeping), ``ActeDocument`` / ``DocumentPublic``, ``ActeStateChange`` /
``StateChangePublic``. The migration ``0001_initial`` creates the same columns.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import Field, SQLModel

from kanol_actes_pes.acte import ActeState

# SQLite only makes an INTEGER PRIMARY KEY auto-increment; PostgreSQL gets a bigint.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class DocumentRole(StrEnum):
    """What a document is in the acte's flow; a role names one document of an acte.

    Annexes are ``annexe_1``... (:func:`annexe_role`), the documents of the prefecture's
    letters and of the authority's answers ``message_{n}`` and ``message_{n}_{k}``
    (:func:`message_role`).
    """

    ACTE = "acte"
    ACTE_TAMPONNE = "acte_tamponne"
    ENVELOPPE = "enveloppe"
    MESSAGE = "message"
    AR_ACTE = "ar_acte"
    ANOMALIE = "anomalie"
    ARCHIVE_TRANSMISSION = "archive_transmission"


def annexe_role(position: int) -> str:
    return f"annexe_{position}"


def message_role(number: int, file_number: int | None = None) -> str:
    """The XML of the acte's message ``number`` (``message_3``), or its file ``message_3_1``."""
    return f"message_{number}" if file_number is None else f"message_{number}_{file_number}"


class Acte(SQLModel, table=True):
    """An acte posted by an organisation, and where its transmission stands."""

    __tablename__ = "acte"
    __table_args__ = (
        UniqueConstraint(
            "siren", "annee_decision", "numero_interne", name="uq_acte_siren_annee_numero"
        ),
        UniqueConstraint("identifiant_acte", name="uq_acte_identifiant_acte"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    siren: str = Field(sa_column=Column(String(9), nullable=False, index=True))
    departement: str = Field(sa_column=Column(String(3), nullable=False))
    # The envelope's other codes (IDCL) as submitted; None for an acte posted before
    # 0003_idcl, which is sent with the settings' defaults.
    arrondissement: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    nature_collectivite: str | None = Field(
        default=None, sa_column=Column(String(2), nullable=True)
    )
    numero_interne: str = Field(sa_column=Column(String(15), nullable=False))
    annee_decision: int = Field(sa_column=Column(Integer, nullable=False))
    nature: int = Field(sa_column=Column(Integer, nullable=False))
    matiere: str = Field(sa_column=Column(String(16), nullable=False))
    objet: str = Field(sa_column=Column(String(500), nullable=False))
    date_decision: date = Field(sa_column=Column(Date, nullable=False))
    identifiant_acte: str = Field(sa_column=Column(String(64), nullable=False))
    state: str = Field(sa_column=Column(String(32), nullable=False, index=True))

    # Set when the acte is claimed for a transmission: with the identifiant it makes the
    # idempotency key the gateway knows the transmission by.
    transmission_id: str | None = Field(default=None, sa_column=Column(String(64)))
    transmission_number: int | None = Field(default=None, sa_column=Column(BigInteger))
    transmission_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    prefecture_transmission_id: str | None = Field(
        default=None, sa_column=Column(String(64), index=True)
    )
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    nature_anomalie: str | None = Field(default=None, sa_column=Column(String(8)))
    # The W3C trace context of the request that posted the acte: its transmission and the
    # prefecture's reply continue that trace, and so does what they cause downstream.
    traceparent: str | None = Field(default=None, sa_column=Column(String(128)))
    detail_anomalie: str | None = Field(default=None, sa_column=Column(Text))

    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    transmitted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    refused_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    date_reception: date | None = Field(default=None, sa_column=Column(Date))

    # Added by 0002_actes.
    type_piece: str | None = Field(default=None, sa_column=Column(String(8)))
    classification_date: date | None = Field(default=None, sa_column=Column(Date))
    annexes_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # When the acte was reported late: no acknowledgement, or stuck transmitting.
    acknowledgement_overdue_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    transmission_stuck_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    cancellation_requested_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    cancellation_reason: str | None = Field(default=None, sa_column=Column(Text))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ActeDocument(SQLModel, table=True):
    """A document of an acte; its bytes live in the object store under ``sha256``."""

    __tablename__ = "acte_document"
    __table_args__ = (UniqueConstraint("acte_id", "role", name="uq_acte_document_role"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    acte_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("acte.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    role: str = Field(sa_column=Column(String(32), nullable=False))
    filename: str = Field(sa_column=Column(String(255), nullable=False))
    media_type: str = Field(sa_column=Column(String(100), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Added by 0002_actes: the piece type code of the acte and its annexes, their place.
    type_piece: str | None = Field(default=None, sa_column=Column(String(8)))
    position: int | None = Field(default=None, sa_column=Column(Integer))


class MessageDirection(StrEnum):
    FROM_PREFECTURE = "in"
    TO_PREFECTURE = "out"


class MessageState(StrEnum):
    RECEIVED = "received"  # a letter of the prefecture, not answered
    ANSWERED = "answered"  # a letter of the prefecture the authority answered
    PENDING = "pending"  # an answer or a 6-1 waiting to be sent
    SENT = "sent"  # taken by the gateway
    ACKNOWLEDGED = "acknowledged"  # the prefecture acknowledged it (3-5, 4-5, 6-2)
    FAILED = "failed"  # the gateway refused it: sending it again would be refused again


class ActeMessage(SQLModel, table=True):
    """A message about an acte after its dépôt: the prefecture's letters, the authority's
    answers and cancellation; numbered per acte (``number``) for its documents' roles."""

    __tablename__ = "acte_message"
    __table_args__ = (UniqueConstraint("acte_id", "number", name="uq_acte_message_number"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    acte_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("acte.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    number: int = Field(sa_column=Column(Integer, nullable=False))
    direction: str = Field(sa_column=Column(String(3), nullable=False))
    code: str = Field(sa_column=Column(String(4), nullable=False))
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    state: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    date_courrier: date | None = Field(default=None, sa_column=Column(Date))
    date_depot: date | None = Field(default=None, sa_column=Column(Date))
    texte: str | None = Field(default=None, sa_column=Column(Text))
    in_reply_to: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid()))
    prefecture_transmission_id: str | None = Field(default=None, sa_column=Column(String(64)))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )


class StoredClassification(SQLModel, table=True):
    """A version of a prefecture's classification (7-2), as received, per département."""

    __tablename__ = "classification"
    __table_args__ = (
        UniqueConstraint("departement", "date_classification", name="uq_classification_version"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(ID_TYPE, primary_key=True, autoincrement=True)
    )
    departement: str = Field(sa_column=Column(String(3), nullable=False, index=True))
    date_classification: date = Field(sa_column=Column(Date, nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ActeStateChange(SQLModel, table=True):
    """One move of an acte's lifecycle, kept forever: who asks why an acte is stuck reads it."""

    __tablename__ = "acte_state_change"

    id: int | None = Field(
        default=None, sa_column=Column(ID_TYPE, primary_key=True, autoincrement=True)
    )
    acte_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("acte.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    from_state: str | None = Field(default=None, sa_column=Column(String(32)))
    to_state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    changed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PrefectureCursor(SQLModel, table=True):
    """How far the receiver has read the gateway's return messages."""

    __tablename__ = "prefecture_cursor"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    cursor: str = Field(sa_column=Column(String(255), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# -- What the API shows --------------------------------------------------------------------


class AnnexeMetadata(SQLModel):
    """One annexe of the upload, in the order of the ``annexes`` file parts."""

    type_piece: str


class ActeMetadata(SQLModel):
    """The ``metadata`` part of ``POST /v1/actes``; values are checked by the service."""

    numero_interne: str
    nature: int
    matiere: str
    objet: str
    date_decision: date
    siren: str | None = None
    # The establishment that decided, if the software knows it: it must be one of the
    # organisation's own (its SIRET starts with the token's SIREN).
    siret: str | None = None
    # CodeTypePJ of the main document; the nature's own (99_DE...) when absent.
    type_piece: str | None = None
    annexes: list[AnnexeMetadata] = []
    # When absent, the département of identity's projection of the organisation, else the
    # configured default.
    departement: str | None = None


class DocumentPublic(SQLModel):
    role: str
    filename: str
    media_type: str
    sha256: str
    size: int
    uri: str
    type_piece: str | None = None
    position: int | None = None


class ActePublic(SQLModel):
    id: uuid.UUID
    siren: str
    identifiant_acte: str
    numero_interne: str
    nature: int
    nature_code: str
    matiere: str
    objet: str
    date_decision: date
    state: ActeState
    created_at: datetime
    updated_at: datetime
    transmitted_at: datetime | None
    acknowledged_at: datetime | None
    refused_at: datetime | None
    date_reception: date | None
    nature_anomalie: str | None
    detail_anomalie: str | None
    last_error: str | None
    documents: list[DocumentPublic]
    type_piece: str | None = None
    classification_date: date | None = None
    # Set when the acte is late: transmitted without an acknowledgement beyond the allowed
    # delay, or stuck transmitting; the same facts go out as events and metrics.
    acknowledgement_overdue_at: datetime | None = None
    transmission_stuck_at: datetime | None = None
    # The acte waits because the hourly volume towards the prefecture is used up.
    waiting_for_capacity: bool = False
    next_attempt_at: datetime | None = None
    cancellation_requested_at: datetime | None = None
    cancelled_at: datetime | None = None


class ActePage(SQLModel):
    items: list[ActePublic]
    next_cursor: str | None = None


class MessagePublic(SQLModel):
    id: uuid.UUID
    number: int
    direction: str
    code: str
    kind: str
    state: str
    date_courrier: date | None
    date_depot: date | None
    texte: str | None
    in_reply_to: uuid.UUID | None
    created_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    last_error: str | None
    documents: list[DocumentPublic]


class MessagesPublic(SQLModel):
    acte_id: uuid.UUID
    items: list[MessagePublic]


class CancelRequest(SQLModel):
    reason: str | None = None


class ClassificationPublic(SQLModel):
    departement: str
    date_classification: date
    matieres: dict[str, str]
    types_piece: dict[str, list[str]]


class StateChangePublic(SQLModel):
    state: str
    previous_state: str | None
    reason: str | None
    changed_at: datetime


class HistoryPublic(SQLModel):
    acte_id: uuid.UUID
    items: list[StateChangePublic]
