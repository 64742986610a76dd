"""The port to Hélios (DGFiP): what actes-pes asks of it, whoever answers.

:mod:`kanol_actes_pes.pes.helios.http_client` speaks HTTP to a gateway (the Hélios
simulator in development and tests). The transmitter and the receivers only know this
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PesDeposit:
    """A PES_Aller handed to Hélios; the same ``idempotency_key`` never makes two deposits."""

    idempotency_key: str
    filename: str
    content: bytes


@dataclass(frozen=True)
class DepositReceipt:
    """Hélios took the flow under this id."""

    helios_id: str
    idempotency_key: str
    received_at: datetime


@dataclass(frozen=True)
class HeliosFile:
    """A file Hélios makes available: a PES_ACQUIT of a deposit, or a PES_Retour.

    ``cursor`` orders a feed: fetching after it returns only later files. ``depot_id`` is
    the deposit an acknowledgement answers (None for a return).
    """

    cursor: str
    helios_id: str
    depot_id: str | None
    id_coll: str
    filename: str
    content: bytes
    received_at: datetime


class HeliosError(Exception):
    """Hélios did not take a request."""


class HeliosUnavailable(HeliosError):
    """Hélios cannot be reached or failed (network, timeout, 5xx): try again later."""


class DepositRejected(HeliosError):
    """Hélios refused the file itself at the gateway; sending it again would fail again."""


class HeliosGateway(Protocol):
    async def deposit(self, deposit: PesDeposit) -> DepositReceipt:
        """Hand a flow over; the same idempotency key returns the same receipt."""
        ...

    async def find_deposit(self, idempotency_key: str) -> DepositReceipt | None:
        """The receipt of the deposit made under this key, if Hélios has it."""
        ...

    async def fetch_acquits(
        self, after_cursor: str | None, wait_seconds: float
    ) -> list[HeliosFile]:
        """Acknowledgements after the cursor, waiting up to ``wait_seconds`` for the first."""
        ...

    async def fetch_retours(self, after_cursor: str | None) -> list[HeliosFile]:
        """PES_Retour files after the cursor."""
        ...
