"""What archive does with the events it consumes: deposit every acknowledged acte."""

from __future__ import annotations

from kanol_archive.documents import DocumentFetcher, DocumentRejected, DocumentUnavailable
from kanol_archive.repository import ArchiveRepository
from kanol_archive.service import ArchiveService
from kanol_common.consumer import EventConsumer, HandlerContext, NonRetryableError, RetryableError
from kanol_common.events import actes
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.logging import get_logger
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import LocalObjectStore

log = get_logger(__name__)

GROUP_ID = "archive"


def build_consumer(
    runtime: ServiceRuntime,
    fetcher: DocumentFetcher,
    store: LocalObjectStore,
    *,
    group_id: str = GROUP_ID,
) -> EventConsumer:
    """The ``archive`` consumer group on ``actes.events``, added to ``runtime``.

    Another ``group_id`` replays the topic through the same handler (tests, a rebuild).
    """
    consumer = EventConsumer(runtime, group_id=group_id, topics=[actes.TOPIC])

    @consumer.on(ActeAcknowledged)
    async def deposit_acknowledged_acte(event: ActeAcknowledged, ctx: HandlerContext) -> None:
        if ctx.envelope.tenant != event.siren:
            raise NonRetryableError(
                f"the event's tenant {ctx.envelope.tenant} is not the acte's SIREN {event.siren}"
            )
        if not event.documents:
            raise NonRetryableError(f"acte {event.acte_id} was acknowledged without documents")

        service = ArchiveService(ArchiveRepository(ctx.session), store)
        existing = await service.already_deposited(ctx.envelope.id)
        if existing is not None:
            # A replay of the event under another consumer group, or from the DLQ.
            log.info("archive.already_deposited", archive_id=str(existing.id))
            return

        # The runtime holds the transaction open around the handler, so the slow part (the
        # fetches) comes first and every write last, in a short burst.
        try:
            documents = await fetcher.fetch_all(event.documents)
        except DocumentUnavailable as exc:
            raise RetryableError(str(exc)) from exc
        except DocumentRejected as exc:
            raise NonRetryableError(str(exc)) from exc

        deposit = await service.deposit_acte(event, ctx.envelope, documents)
        if deposit is None:
            return
        await ctx.publish(
            deposit.deposited_event(),
            subject=str(deposit.archive.id),
            tenant=deposit.archive.siren,
        )

    return consumer
