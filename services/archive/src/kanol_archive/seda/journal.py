"""Where deposits and refusals are written down for good: the archive's logbook.

A trusted archive answers for every entry and every refusal. :class:`DepositJournal` is the
one place the ingest writes to; it records in the caller's transaction, so the entry
commits with the deposit, or with nothing but itself for a refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.logging import get_logger

log = get_logger(__name__)

# The operations the ingest writes, named as the logbook names them.
DEPOSITED: Final = "archive.deposited"
TRANSFER_REFUSED: Final = "transfer.refused"
SEDA_DOCUMENT_DOWNLOADED: Final = "seda_document.downloaded"


class DepositJournal(Protocol):
    async def record(
        self,
        session: AsyncSession,
        *,
        operation: str,
        outcome: str,
        tenant: str,
        archive_id: str | None,
        detail: Mapping[str, object],
        actor: str | None = None,
    ) -> None: ...


class LogLineJournal:
    """Writes each operation as a structured log line.

    TODO: log lines can be altered or lost unnoticed; the hash-chained logbook replaces this
    journal as soon as its API lands, and until then a deposit's only lasting proof is its
    ATR.
    """

    async def record(
        self,
        session: AsyncSession,
        *,
        operation: str,
        outcome: str,
        tenant: str,
        archive_id: str | None,
        detail: Mapping[str, object],
        actor: str | None = None,
    ) -> None:
        log.info(
            "archive.logbook",
            operation=operation,
            outcome=outcome,
            tenant=tenant,
            archive_id=archive_id,
            actor=actor,
            **dict(detail),
        )
