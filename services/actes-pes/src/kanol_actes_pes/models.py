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
)
from sqlmodel import Field, SQLModel

from kanol_actes_pes.acte import ActeState

# SQLite only makes an INTEGER PRIMARY KEY auto-increment; PostgreSQL gets a bigint.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class DocumentRole(StrEnum):
    """What a document is in the acte's flow; one document per role for now.

    TODO: annexes will need several documents of one role, and a position among them.
    """

    ACTE = "acte"
    ENVELOPPE = "enveloppe"
    MESSAGE = "message"
    AR_ACTE = "ar_acte"
    ANOMALIE = "anomalie"
    ARCHIVE_TRANSMISSION = "archive_transmission"


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


class ActeMetadata(SQLModel):
    """The ``metadata`` part of ``POST /v1/actes``; values are checked by the service."""

    numero_interne: str
    nature: int
    matiere: str
    objet: str
    date_decision: date
    siren: str | None = None
    # TODO: the département comes from identity.events once actes-pes keeps a projection of
    # the organisations; until then a caller may give it, else the configured default holds.
    departement: str | None = None


class DocumentPublic(SQLModel):
    role: str
    filename: str
    media_type: str
    sha256: str
    size: int
    uri: str


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


class StateChangePublic(SQLModel):
    state: str
    previous_state: str | None
    reason: str | None
    changed_at: datetime


class HistoryPublic(SQLModel):
    acte_id: uuid.UUID
    items: list[StateChangePublic]
