"""The port to the prefecture's @CTES gateway: what actes-pes asks of it, whoever answers.

Two adapters implement it: :mod:`kanol_actes_pes.prefecture.http_client` speaks HTTP to a
gateway (the prefecture simulator in development and tests). The transmitter and the
receiver only know this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ArchiveFile:
    """One file of a transmission archive, under its official name."""

    name: str
    content: bytes
    media_type: str


@dataclass(frozen=True)
class TransmissionArchive:
    """A tar.gz holding an envelope, one message and the files the message names.

    ``idempotency_key`` names this transmission for the gateway: sending the same key
    twice must never make two transmissions.
    """

    idempotency_key: str
    identifiant_acte: str
    filename: str
    content: bytes
    enveloppe: ArchiveFile
    message: ArchiveFile
    documents: tuple[ArchiveFile, ...]


@dataclass(frozen=True)
class TransmissionReceipt:
    """The gateway took the transmission under this id."""

    transmission_id: str
    idempotency_key: str
    received_at: datetime


@dataclass(frozen=True)
class ReturnMessage:
    """A message from the prefecture (1-2 ARActe, 1-3 anomalie...), as the gateway relays it.

    ``cursor`` orders the messages: fetching after it returns only later ones.
    """

    cursor: str
    code: str
    filename: str
    content: bytes
    transmission_id: str | None
    identifiant_acte: str | None
    received_at: datetime
    # The département whose prefecture sent it (classification replies name no acte).
    departement: str | None = None
    # The files a letter of the prefecture carries (its PDFs), by their names in the XML.
    files: tuple[ArchiveFile, ...] = ()


class GatewayError(Exception):
    """The gateway did not take a request."""


class GatewayUnavailable(GatewayError):
    """The gateway cannot be reached or failed (network, timeout, 5xx): try again later."""


class GatewayBusy(GatewayError):
    """The gateway's volume limit is reached: send again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransmissionRejected(GatewayError):
    """The gateway refused the archive itself (unreadable, invalid against the schema).

    Sending the same archive again would be refused again.
    """


class PrefectureGateway(Protocol):
    async def transmit(self, archive: TransmissionArchive) -> TransmissionReceipt:
        """Hand a transmission over; the same idempotency key returns the same receipt."""
        ...

    async def has_transmission(self, idempotency_key: str) -> TransmissionReceipt | None:
        """The receipt of the transmission sent under this key, if the gateway has it."""
        ...

    async def fetch_messages(
        self, after_cursor: str | None, wait_seconds: float
    ) -> list[ReturnMessage]:
        """Return messages after the cursor, waiting up to ``wait_seconds`` for the first."""
        ...
