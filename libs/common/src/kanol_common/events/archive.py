"""Events published by archive on ``archive.events``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kanol_common.events.base import EventData

TOPIC = "archive.events"


class ArchiveDeposited(EventData):
    """Documents were deposited in the regional archive, each stored with its SHA-512.

    Since the SEDA transfers, every deposit also has its ``ArchiveTransfer`` manifest and
    its ``ArchiveTransferReply`` (ATR, the proof of deposit), downloadable at the URLs given.
    A transfer through the API (``source_kind`` transfer) has no source event: its
    ``source_event_id`` is an id of its own and its ``source_event_type``
    ``fr.kanol.archive.transfer``.
    """

    event_type = "fr.kanol.archive.archive.deposited.v1"
    topic = TOPIC

    archive_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    source_event_id: str = Field(description="The event that caused the deposit")
    source_event_type: str
    acte_id: str | None = None
    identifiant_acte: str | None = None
    object_count: int = Field(ge=0)
    total_size: int = Field(ge=0)
    deposited_at: datetime
    source_kind: str | None = Field(
        default=None, description="What was deposited: acte, pes_flow or transfer (SEDA API)"
    )
    pes_flow_id: str | None = None
    seda_version: str | None = Field(default=None, description="2.1 or 2.2")
    message_identifier: str | None = Field(
        default=None, description="MessageIdentifier of the SEDA ArchiveTransfer"
    )
    reply_identifier: str | None = Field(
        default=None, description="MessageIdentifier of the ArchiveTransferReply (ATR)"
    )
    manifest_url: str | None = Field(default=None, description="Path of the manifest on archive")
    reply_url: str | None = Field(default=None, description="Path of the ATR on archive")


class TransferRejected(EventData):
    """A SEDA transfer was refused: the ATR KO lists every reason; nothing was kept."""

    event_type = "fr.kanol.archive.transfer.rejected.v1"
    topic = TOPIC

    siren: str = Field(pattern=r"^[0-9]{9}$", description="The organisation that sent it")
    client_id: str = Field(description="The API client that sent it")
    message_identifier: str | None = Field(
        default=None, description="MessageIdentifier of the transfer, when it could be read"
    )
    reply_identifier: str = Field(description="MessageIdentifier of the ATR KO")
    seda_version: str | None = None
    reasons: tuple[str, ...] = Field(description="Every reason, as the ATR's KO events say it")
    rejected_at: datetime


class ArchiveIntegrityFailed(EventData):
    """An audit found a stored object whose content no longer matches its fingerprints.

    ``problem`` says what: ``missing`` (no content at its address), ``sha256_differs``
    (the address no longer matches), ``sha512_differs`` (the recorded SHA-512 no longer
    matches) or ``size_differs``. Operators restore the object from a copy.
    """

    event_type = "fr.kanol.archive.integrity.failed.v1"
    topic = TOPIC

    archive_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    document: str = Field(description="object, manifest or reply (the ATR)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The object's address")
    sha512: str | None = Field(default=None, description="The SHA-512 recorded at deposit")
    problem: str
    audit_run_id: str
    found_at: datetime


class LogbookSealed(EventData):
    """The head of archive's hash-chained logbook, published so that a history rewritten
    in the database (hashes included) disagrees with what was seen outside it."""

    event_type = "fr.kanol.archive.logbook.sealed.v1"
    topic = TOPIC

    sequence: int = Field(ge=1, description="The last entry's sequence")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="The last entry's SHA-256 hash")
    sealed_at: datetime


class EliminationProposed(EventData):
    """Archives of an organisation reached the end of their retention with the final action
    Destroy: its archivist is asked to approve or refuse their elimination."""

    event_type = "fr.kanol.archive.elimination.proposed.v1"
    topic = TOPIC

    proposal_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    archive_ids: tuple[str, ...] = Field(description="The archives proposed")
    proposed_at: datetime


class ArchiveEliminated(EventData):
    """The organisation's archivist approved the elimination of this archive: its content
    left the store; its description, fingerprints, manifest and ATR remain."""

    event_type = "fr.kanol.archive.archive.eliminated.v1"
    topic = TOPIC

    archive_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    proposal_id: str
    approved_by: str = Field(description="The archivist's client or agent")
    eliminated_at: datetime
