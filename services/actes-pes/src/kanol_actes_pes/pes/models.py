"""The PES tables and the shapes the API shows of them.

``PesFlow`` (a PES_Aller posted by an organisation and where it stands), ``PesDocument``
(its bytes in the object store: the flow, its acknowledgement), ``PesStateChange`` (its
history), ``PesRetour`` (later returns fetched from Hélios) and ``PesCursor`` (how far the
feeds of Hélios were read). The migration ``0002_pes`` creates the same columns.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class PesFlowState(StrEnum):
    SUBMITTED = "submitted"
    TRANSMITTING = "transmitting"
    TRANSMITTED = "transmitted"
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    TRANSMISSION_FAILED = "transmission_failed"


class PesDocumentRole(StrEnum):
    PES_ALLER = "pes_aller"
    PES_ACQUIT = "pes_acquit"


class PesFlow(SQLModel, table=True):
    __tablename__ = "pes_flow"
    __table_args__ = (
        UniqueConstraint("id_coll", "nom_fic", name="uq_pes_flow_id_coll_nom_fic"),
        UniqueConstraint("sha256", name="uq_pes_flow_sha256"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    siren: str = Field(sa_column=Column(String(9), nullable=False, index=True))
    id_coll: str = Field(sa_column=Column(String(14), nullable=False))
    nom_fic: str = Field(sa_column=Column(String(255), nullable=False))
    typ_fic: str = Field(sa_column=Column(String(32), nullable=False))
    cod_col: str = Field(sa_column=Column(String(8), nullable=False))
    cod_bud: str = Field(sa_column=Column(String(8), nullable=False))
    id_post: str = Field(sa_column=Column(String(16), nullable=False))
    libelle_col_bud: str = Field(sa_column=Column(String(255), nullable=False))
    dte_str: date = Field(sa_column=Column(Date, nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    signed: bool = Field(sa_column=Column(Boolean, nullable=False))
    signer_trusted: bool = Field(sa_column=Column(Boolean, nullable=False))
    signatures: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    state: str = Field(sa_column=Column(String(32), nullable=False, index=True))

    # The idempotency key Hélios knows the deposit by, set at the claim.
    transmission_key: str | None = Field(default=None, sa_column=Column(String(128)))
    transmission_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    helios_id: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    acquit_errors: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    date_ack: date | None = Field(default=None, sa_column=Column(Date))
    traceparent: str | None = Field(default=None, sa_column=Column(String(128)))
    # When the monitor reported the flow late in its current state (acknowledgement overdue,
    # transmission stuck); cleared by each change of state, so each lateness is told once.
    late_reported_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )

    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    transmitted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    acknowledged_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    refused_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class PesDocument(SQLModel, table=True):
    __tablename__ = "pes_document"
    __table_args__ = (UniqueConstraint("flow_id", "role", name="uq_pes_document_role"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    flow_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("pes_flow.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    role: str = Field(sa_column=Column(String(32), nullable=False))
    filename: str = Field(sa_column=Column(String(255), nullable=False))
    media_type: str = Field(sa_column=Column(String(100), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PesStateChange(SQLModel, table=True):
    __tablename__ = "pes_state_change"

    id: int | None = Field(
        default=None, sa_column=Column(ID_TYPE, primary_key=True, autoincrement=True)
    )
    flow_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("pes_flow.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    from_state: str | None = Field(default=None, sa_column=Column(String(32)))
    to_state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    changed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PesRetour(SQLModel, table=True):
    __tablename__ = "pes_retour"
    __table_args__ = (UniqueConstraint("helios_id", name="uq_pes_retour_helios_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    helios_id: str = Field(sa_column=Column(String(64), nullable=False))
    siren: str = Field(sa_column=Column(String(9), nullable=False, index=True))
    id_coll: str = Field(sa_column=Column(String(14), nullable=False))
    nom_fic: str = Field(sa_column=Column(String(255), nullable=False))
    dte_str: date = Field(sa_column=Column(Date, nullable=False))
    filename: str = Field(sa_column=Column(String(255), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PesCursor(SQLModel, table=True):
    __tablename__ = "pes_cursor"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    cursor: str = Field(sa_column=Column(String(255), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# -- What the API shows --------------------------------------------------------------------


class PesDocumentPublic(SQLModel):
    role: str
    filename: str
    media_type: str
    sha256: str
    size: int
    uri: str


class PesAckErrorPublic(SQLModel):
    number: int
    code: str
    label: str
    domaine: str
    piece: str | None


class PesSignaturePublic(SQLModel):
    signature_id: str | None
    signed_ids: list[str]
    signer_subject: str
    signer_serial: str
    signing_time: datetime
    trusted_chain: bool
    revocation_checked: bool = Field(
        default=False, description="Whether a revocation list covered every link of its chain"
    )


class PesFlowPublic(SQLModel):
    id: uuid.UUID
    siren: str
    id_coll: str
    nom_fic: str
    typ_fic: str
    cod_col: str
    cod_bud: str
    id_post: str
    libelle_col_bud: str
    dte_str: date
    sha256: str
    size: int
    signed: bool
    signer_trusted: bool
    signatures: list[PesSignaturePublic]
    state: PesFlowState
    helios_id: str | None
    last_error: str | None
    date_ack: date | None
    acquit_errors: list[PesAckErrorPublic]
    acquit_overdue: bool
    created_at: datetime
    updated_at: datetime
    transmitted_at: datetime | None
    acknowledged_at: datetime | None
    refused_at: datetime | None
    documents: list[PesDocumentPublic]


class PesFlowPage(SQLModel):
    items: list[PesFlowPublic]
    next_cursor: str | None


class PesStateChangePublic(SQLModel):
    state: str
    previous_state: str | None
    reason: str | None
    changed_at: datetime


class PesHistoryPublic(SQLModel):
    flow_id: uuid.UUID
    items: list[PesStateChangePublic]


class PesRetourPublic(SQLModel):
    id: uuid.UUID
    siren: str
    id_coll: str
    nom_fic: str
    dte_str: date
    filename: str
    sha256: str
    size: int
    received_at: datetime
    uri: str


class PesRetourPage(SQLModel):
    items: list[PesRetourPublic]
    next_cursor: str | None
