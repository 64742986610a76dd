"""What archive does with the events it consumes: deposit every acknowledged acte and PES flow."""

from __future__ import annotations

from collections.abc import Sequence

from kanol_archive.documents import (
    DocumentFetcher,
    DocumentRejected,
    DocumentUnavailable,
    FetchedDocument,
    close_all,
)
from kanol_archive.repository import ArchiveRepository
from kanol_archive.seda.journal import DepositJournal
from kanol_archive.seda.repository import acte_key, pes_flow_key
from kanol_archive.seda.rules import RuleSource
from kanol_archive.service import DEFAULT_ARCHIVAL_AGENCY, ArchiveService, Deposit
from kanol_common.consumer import EventConsumer, HandlerContext, NonRetryableError, RetryableError
from kanol_common.events import DocumentRef, actes, pes
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.pes import PesFlowAcknowledged
from kanol_common.logging import get_logger
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import ObjectStore

log = get_logger(__name__)

GROUP_ID = "archive"


def build_consumer(
    runtime: ServiceRuntime,
    fetcher: DocumentFetcher,
    store: ObjectStore,
    *,
    group_id: str = GROUP_ID,
    archival_agency: str = DEFAULT_ARCHIVAL_AGENCY,
    journal: DepositJournal | None = None,
    rules: RuleSource | None = None,
) -> EventConsumer:
    """The ``archive`` consumer group on ``actes.events`` and ``pes.events``, added to ``runtime``.

    Another ``group_id`` replays the topics through the same handlers (tests, a rebuild).
    """
    consumer = EventConsumer(runtime, group_id=group_id, topics=[actes.TOPIC, pes.TOPIC])

    def service_for(ctx: HandlerContext) -> ArchiveService:
        return ArchiveService(
            ArchiveRepository(ctx.session),
            store,
            archival_agency=archival_agency,
            rules=rules,
            journal=journal,
        )

    @consumer.on(ActeAcknowledged)
    async def deposit_acknowledged_acte(event: ActeAcknowledged, ctx: HandlerContext) -> None:
        _check_source(ctx, event.siren, event.documents, f"acte {event.acte_id}")
        service = service_for(ctx)
        if await _deposited_before(service, ctx, acte_key(event.acte_id)):
            return

        documents = await _fetch(fetcher, event.documents)
        try:
            deposit = await service.deposit_acte(event, ctx.envelope, documents)
        finally:
            close_all(documents)
        await _announce(ctx, deposit)

    @consumer.on(PesFlowAcknowledged)
    async def deposit_acknowledged_pes_flow(
        event: PesFlowAcknowledged, ctx: HandlerContext
    ) -> None:
        _check_source(ctx, event.siren, event.documents, f"PES flow {event.flow_id}")
        service = service_for(ctx)
        if await _deposited_before(service, ctx, pes_flow_key(event.flow_id)):
            return

        documents = await _fetch(fetcher, event.documents)
        try:
            deposit = await service.deposit_pes_flow(event, ctx.envelope, documents)
        finally:
            close_all(documents)
        await _announce(ctx, deposit)

    return consumer


def _check_source(
    ctx: HandlerContext, siren: str, documents: Sequence[DocumentRef], what: str
) -> None:
    if ctx.envelope.tenant != siren:
        raise NonRetryableError(
            f"the event's tenant {ctx.envelope.tenant} is not the SIREN {siren} of {what}"
        )
    if not documents:
        raise NonRetryableError(f"{what} was acknowledged without documents")


async def _deposited_before(service: ArchiveService, ctx: HandlerContext, source_key: str) -> bool:
    existing = await service.already_deposited(ctx.envelope.id)
    if existing is None:
        existing = await service.source_deposited(source_key)
    if existing is None:
        return False
    # A replay of the event under another consumer group or from the DLQ, or the same
    # acte or flow announced twice: one archive either way.
    log.info("archive.already_deposited", archive_id=str(existing.id), source_key=source_key)
    return True


async def _fetch(fetcher: DocumentFetcher, refs: Sequence[DocumentRef]) -> list[FetchedDocument]:
    # The runtime holds the transaction open around the handler, so the slow part (the
    # fetches) comes first and every write last, in a short burst.
    try:
        return await fetcher.fetch_all(refs)
    except DocumentUnavailable as exc:
        raise RetryableError(str(exc)) from exc
    except DocumentRejected as exc:
        raise NonRetryableError(str(exc)) from exc


async def _announce(ctx: HandlerContext, deposit: Deposit | None) -> None:
    if deposit is None:
        return
    await ctx.publish(
        deposit.deposited_event(), subject=str(deposit.archive.id), tenant=deposit.archive.siren
    )
