"""Archives and their objects: one archive per versement, one object per document.

The names are those a SEDA transfer will use: an archive (the future ``ArchiveUnit``) holds
archive objects (``BinaryDataObject``), each with its fingerprints (``MessageDigest``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Final

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from kanol_common.db import UtcDateTime


class ArchiveBase(SQLModel):
    siren: str = Field(max_length=9, description="SIREN of the organisation that owns it")
    source_event_id: str = Field(max_length=64, description="The event that caused the deposit")
    source_event_type: str = Field(max_length=255)
    acte_id: str | None = Field(default=None, max_length=64)
    identifiant_acte: str | None = Field(
        default=None,
        max_length=64,
        description="{dept}-{SIREN}-{YYYYMMDD}-{NumeroInterne}-{nature}",
    )
    title: str = Field(description="What the archive is about: the acte's objet")
    nature: int | None = Field(default=None, description="ACTES nature code, 1 to 6")
    matiere: str | None = Field(default=None, max_length=32)
    date_decision: date | None = None
    deposited_at: datetime = Field(sa_type=DateTime(timezone=True))
    source_kind: str | None = Field(
        default=None, max_length=16, description="acte, pes_flow or transfer (SEDA API)"
    )
    pes_flow_id: str | None = Field(default=None, max_length=64)
    originating_agency: str | None = Field(
        default=None, max_length=64, description="OriginatingAgencyIdentifier of the transfer"
    )
    seda_version: str | None = Field(default=None, max_length=8, description="2.1 or 2.2")
    message_identifier: str | None = Field(
        default=None, max_length=255, description="MessageIdentifier of the ArchiveTransfer"
    )
    reply_identifier: str | None = Field(
        default=None, max_length=255, description="MessageIdentifier of the ATR"
    )


class Archive(ArchiveBase, table=True):
    __tablename__ = "archive"
    __table_args__ = (
        # One archive per source event, whichever consumer replays it.
        UniqueConstraint("source_event_id", name="uq_archive_source_event_id"),
        # The listing: one organisation's archives, newest first.
        Index("ix_archive_siren_deposited", "siren", "deposited_at", "id"),
        Index("ix_archive_acte_id", "acte_id"),
        Index("ix_archive_identifiant_acte", "identifiant_acte"),
        # One archive per source, whatever the event: an acte, a PES flow, or a transfer's
        # MessageIdentifier within its organisation.
        UniqueConstraint("source_key", name="uq_archive_source_key"),
    )

    id: uuid.UUID = Field(primary_key=True)
    source_key: str | None = Field(
        default=None, max_length=320, description="acte:<id>, pes_flow:<id>, transfer:<siren>:<id>"
    )
    # The SEDA manifest and the ATR, in the object store by their SHA-256.
    manifest_sha256: str | None = Field(default=None, max_length=64)
    reply_sha256: str | None = Field(default=None, max_length=64)


class ArchiveObjectBase(SQLModel):
    role: str = Field(max_length=64, description="What the document is, e.g. acte, ar_acte")
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=255)
    size: int = Field(ge=0, sa_type=BigInteger)
    sha256: str = Field(max_length=64, description="SHA-256 of the content, hex")
    sha512: str = Field(max_length=128, description="SHA-512 of the content, hex")


class ArchiveObject(ArchiveObjectBase, table=True):
    __tablename__ = "archive_object"
    __table_args__ = (
        UniqueConstraint("archive_id", "position", name="uq_archive_object_position"),
    )

    id: uuid.UUID = Field(primary_key=True)
    archive_id: uuid.UUID = Field(foreign_key="archive.id", index=True)
    position: int = Field(ge=0, description="Order of the document in its versement")
    storage_key: str = Field(max_length=255, description="Address in the object store")


class ArchiveObjectPublic(ArchiveObjectBase):
    download_url: str = Field(description="Path of the object's content on this API")


class ArchivePublic(ArchiveBase):
    id: uuid.UUID
    deposited_at: UtcDateTime


class ArchiveDetail(ArchivePublic):
    objects: list[ArchiveObjectPublic]


class ArchivePage(SQLModel):
    items: list[ArchivePublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; absent on the last page"
    )


# The states of a pending transfer.
RECEIVED: Final = "received"
CHECKING: Final = "checking"
DONE: Final = "done"


class PendingTransfer(SQLModel, table=True):
    """A transfer received with ``respond-async``: where its check stands, then its answer."""

    __tablename__ = "pending_transfer"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    siren: str = Field(sa_column=Column(String(9), nullable=False, index=True))
    client_id: str = Field(sa_column=Column(String(255), nullable=False))
    state: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    claimed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # The HTTP status the synchronous answer would have had: 201, 200 (sent again) or 422.
    status: int | None = Field(default=None, sa_column=Column(Integer))
    # The ZIP, in the object store until it is checked.
    package_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    reply_sha256: str | None = Field(default=None, sa_column=Column(String(64)))
    archive_id: uuid.UUID | None = Field(default=None)
    error: str | None = Field(default=None, sa_column=Column(Text))
