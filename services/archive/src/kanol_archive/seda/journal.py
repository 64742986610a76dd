"""Where deposits and refusals are written down for good: the archive's logbook.

A trusted archive answers for every entry and every refusal. :class:`DepositJournal` is the
one place the ingest writes to; it records in the caller's transaction, so the entry
commits with the deposit, or with nothing but itself for a refusal. The hash-chained
logbook (``kanol_archive.logbook.Logbook``) is the journal the service runs with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

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
