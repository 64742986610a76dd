"""Sending PES flows to Hélios and reading its answers: three background tasks.

The transmitter picks submitted flows (woken by each post, polling as a fallback),
claims each one, deposits it, and records it transmitted. The guard against depositing a
flow twice is the ACTES one (see ``kanol_actes_pes.transmitter``):

1. the claim is a compare-and-set on the state (``submitted`` -> ``transmitting``)
   committed before anything is sent, and it sets the deposit's idempotency key;
2. Hélios knows the deposit by that key and never takes a key twice;
3. a flow found ``transmitting`` (a crash between the deposit and its record, a deposit
   whose answer was lost, Hélios unreachable) is settled by asking Hélios whether it has
   that key: if so it is recorded transmitted, else the same file is deposited again under
   the same key. Only a definite refusal by the gateway ends in ``transmission_failed``.

The acknowledgement receiver long-polls the PES_ACQUIT feed and moves flows to
``acknowledged`` or ``refused``, in one transaction with the stored acknowledgement, the
event and the feed's cursor. The return fetcher reads the PES_Retour feed periodically and
stores each return once (keyed by Hélios's id), with its event and the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.pes import pes_xml, repository, service
from kanol_actes_pes.pes.helios.port import (
    DepositReceipt,
    DepositRejected,
    HeliosFile,
    HeliosGateway,
    HeliosUnavailable,
    PesDeposit,
)
from kanol_actes_pes.pes.models import (
    PesDocument,
    PesDocumentRole,
    PesFlow,
    PesFlowState,
    PesRetour,
)
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.db import Database
from kanol_common.errors import Problem
from kanol_common.holds import put_held
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore
from kanol_common.wakeup import Wakeup

log = get_logger(__name__)

ACQUITS_CURSOR = "helios-acquits"
RETOURS_CURSOR = "helios-retours"

AfterDeposit = Callable[[PesFlow, DepositReceipt], Awaitable[None]]


async def _guarded(name: str, step: Callable[[], Awaitable[object]], pause: float) -> None:
    try:
        await step()
    except asyncio.CancelledError:
        raise
    except Exception:
        # The database is away or a bug: the flows stay where they are, the next turn retries.
        log.exception(f"{name}.turn_failed")
        await asyncio.sleep(pause)


@dataclass
class PesTransmitter:
    """Claims, deposits and records PES flows; ``after_deposit`` lets tests crash it."""

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: HeliosGateway
    after_deposit: AfterDeposit | None = None

    def __post_init__(self) -> None:
        self._wakeup = Wakeup()

    def wake(self) -> None:
        self._wakeup.ring()

    async def run(self) -> None:
        pause = min(self.settings.transmit_poll_seconds, 1.0)
        await _guarded("pes_transmitter", self.recover_all, pause)
        while True:
            await _guarded("pes_transmitter", self.run_once, pause)
            await self._wakeup.wait(self.settings.transmit_poll_seconds)

    async def run_once(self) -> int:
        """One turn: settle the due ``transmitting`` flows, then deposit the submitted ones."""
        now = service.now_utc()
        lease_cutoff = now - timedelta(seconds=self.settings.transmit_lease_seconds)
        batch = self.settings.transmit_batch_size
        async with self.database.session() as session:
            stale = await repository.transmitting_due(session, now, lease_cutoff, batch)
            due = await repository.submitted_due(session, now, batch)
        for flow_id in stale:
            await self.recover(flow_id)
        await self._concurrently(due)
        return len(due)

    async def _concurrently(self, flow_ids: Sequence[uuid.UUID]) -> None:
        limit = asyncio.Semaphore(self.settings.transmit_concurrency)

        async def one(flow_id: uuid.UUID) -> None:
            async with limit:
                await self.transmit(flow_id)

        outcomes = await asyncio.gather(*(one(i) for i in flow_ids), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]

    async def recover_all(self) -> int:
        async with self.database.session() as session:
            left = await repository.transmitting_due(session, None, None, 10_000)
        for flow_id in left:
            await self.recover(flow_id)
        return len(left)

    async def transmit(self, flow_id: uuid.UUID) -> None:
        """Claim the flow if it is still submitted, then deposit it."""
        async with self.database.session() as session:
            flow = await repository.get_flow(session, flow_id)
            if flow is None or flow.state != PesFlowState.SUBMITTED.value:
                return
            try:
                await service.change_state(
                    session,
                    flow,
                    PesFlowState.TRANSMITTING,
                    reason="claimed for deposit at Hélios",
                    transmission_key=f"{flow.id}/{uuid.uuid4().hex}",
                    transmission_attempts=flow.transmission_attempts + 1,
                    next_attempt_at=None,
                )
            except service.StaleFlow:
                await session.rollback()
                return
            await session.commit()
        with service.in_trace_of(flow, "pes.transmit"):
            log.info("pes.flow_claimed", flow_id=str(flow_id), tenant=flow.siren)
            await self._deposit(flow)

    async def recover(self, flow_id: uuid.UUID) -> None:
        """Settle a flow found ``transmitting``: record it if Hélios has it, else deposit again."""
        async with self.database.session() as session:
            flow = await repository.get_flow(session, flow_id)
        if flow is None or flow.state != PesFlowState.TRANSMITTING.value:
            return
        assert flow.transmission_key is not None
        with service.in_trace_of(flow, "pes.recover"):
            try:
                receipt = await self.gateway.find_deposit(flow.transmission_key)
            except HeliosUnavailable as exc:
                await self._postpone(flow, str(exc))
                return
            if receipt is not None:
                log.info("pes.deposit_recovered", flow_id=str(flow_id), tenant=flow.siren)
                await self._record(flow, receipt, "recovered: Hélios already had this deposit")
                return
            log.info("pes.deposit_resent", flow_id=str(flow_id), tenant=flow.siren)
            await self._deposit(flow)

    async def _deposit(self, flow: PesFlow) -> None:
        assert flow.transmission_key is not None
        content = await self.store.get(flow.sha256)
        async with self.database.session() as session:
            documents = await repository.documents_of(session, flow.id)
        filename = next(
            (d.filename for d in documents if d.role == PesDocumentRole.PES_ALLER.value),
            f"{flow.nom_fic}.xml",
        )
        deposit = PesDeposit(flow.transmission_key, filename, content)
        try:
            receipt = await self.gateway.deposit(deposit)
        except DepositRejected as exc:
            await self._fail(flow, str(exc))
            return
        except HeliosUnavailable as exc:
            # Hélios may have taken it before the answer was lost: only recovery, asking
            # under the same key, may decide.
            await self._postpone(flow, str(exc))
            return
        if self.after_deposit is not None:
            await self.after_deposit(flow, receipt)
        await self._record(flow, receipt, "Hélios's gateway took it")

    async def _record(self, flow: PesFlow, receipt: DepositReceipt, reason: str) -> None:
        async with self.database.session() as session:
            try:
                await service.change_state(
                    session,
                    flow,
                    PesFlowState.TRANSMITTED,
                    reason=reason,
                    helios_id=receipt.helios_id,
                    transmitted_at=receipt.received_at,
                    next_attempt_at=None,
                    last_error=None,
                )
            except service.StaleFlow:
                # The acknowledgement arrived first and recorded the deposit itself.
                await session.rollback()
                return
            service.publish_transmitted(session, flow)
            await session.commit()
        log.info("pes.flow_transmitted", flow_id=str(flow.id), tenant=flow.siren)

    async def _postpone(self, flow: PesFlow, error: str) -> None:
        attempts = max(flow.transmission_attempts, 1)
        delay = min(
            self.settings.transmit_retry_base_seconds * 2 ** (attempts - 1),
            self.settings.transmit_retry_max_seconds,
        )
        values = {
            "next_attempt_at": service.now_utc() + timedelta(seconds=delay),
            "last_error": error[:2000],
            "transmission_attempts": attempts + 1,
            "updated_at": service.now_utc(),
        }
        async with self.database.session() as session:
            await repository.compare_and_set_state(
                session, flow.id, PesFlowState.TRANSMITTING, PesFlowState.TRANSMITTING, values
            )
            await session.commit()
        log.warning("pes.deposit_postponed", flow_id=str(flow.id), error=error, retry_in=delay)

    async def _fail(self, flow: PesFlow, error: str) -> None:
        async with self.database.session() as session:
            with contextlib.suppress(service.StaleFlow):
                await service.change_state(
                    session,
                    flow,
                    PesFlowState.TRANSMISSION_FAILED,
                    reason=f"Hélios's gateway refused the file: {error}"[:2000],
                    last_error=error[:2000],
                )
            await session.commit()
        log.error("pes.deposit_refused", flow_id=str(flow.id), tenant=flow.siren, error=error)


@dataclass
class AcquitReceiver:
    """Long-polls Hélios's acknowledgements and settles the flows they answer."""

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: HeliosGateway

    async def run(self) -> None:
        while True:
            try:
                await self.receive_once(self.settings.helios_poll_wait_seconds)
            except asyncio.CancelledError:
                raise
            except HeliosUnavailable as exc:
                log.warning("pes.acquits_unavailable", error=str(exc))
                await asyncio.sleep(min(self.settings.transmit_retry_base_seconds, 5.0))
            except Exception:
                log.exception("pes.acquits_turn_failed")
                await asyncio.sleep(1.0)

    async def receive_once(self, wait_seconds: float = 0.0) -> int:
        async with self.database.session() as session:
            cursor = await repository.load_cursor(session, ACQUITS_CURSOR)
        received = await self.gateway.fetch_acquits(cursor, wait_seconds)
        for file in received:
            await self._handle(file)
        return len(received)

    async def _handle(self, file: HeliosFile) -> None:
        async with self.database.session() as session:
            await self._apply(session, file)
            await repository.save_cursor(session, ACQUITS_CURSOR, file.cursor, service.now_utc())
            await session.commit()

    async def _apply(self, session: AsyncSession, file: HeliosFile) -> None:
        try:
            acquit = pes_xml.read_acquit(file.content)
        except Problem as exc:
            log.error("pes.acquit_unreadable", filename=file.filename, detail=exc.detail)
            return
        flow = await repository.flow_for_acquit(
            session, file.depot_id, acquit.id_coll, acquit.nom_fic
        )
        if flow is None:
            log.error("pes.acquit_unmatched", filename=file.filename, nom_fic=acquit.nom_fic)
            return
        with service.in_trace_of(flow, "pes.acquit_received"):
            if not await self._ensure_transmitted(session, flow, file):
                return
            document = await self._store(session, flow, file)
            documents = [*await repository.documents_of(session, flow.id), document]
            documents = list({d.role: d for d in documents}.values())
            if acquit.accepted:
                await service.change_state(
                    session,
                    flow,
                    PesFlowState.ACKNOWLEDGED,
                    reason=f"PES_ACQUIT {file.filename}",
                    acknowledged_at=service.now_utc(),
                    date_ack=acquit.dte_str,
                )
                service.publish_acknowledged(session, flow, documents, self.settings)
                log.info("pes.flow_acknowledged", flow_id=str(flow.id), tenant=flow.siren)
                return
            errors = [
                {
                    "number": e.number,
                    "code": e.code,
                    "label": e.label,
                    "domaine": e.domaine,
                    "piece": e.piece,
                }
                for e in acquit.errors
            ]
            summary = "; ".join(f"{e.number}. {e.code}: {e.label}" for e in acquit.errors)
            await service.change_state(
                session,
                flow,
                PesFlowState.REFUSED,
                reason=f"PES_ACQUIT {file.filename}: {summary}"[:4000],
                refused_at=service.now_utc(),
                date_ack=acquit.dte_str,
                acquit_errors=errors,
            )
            service.publish_refused(session, flow, documents, self.settings)
            log.warning("pes.flow_refused", flow_id=str(flow.id), tenant=flow.siren, errors=summary)

    async def _ensure_transmitted(
        self, session: AsyncSession, flow: PesFlow, file: HeliosFile
    ) -> bool:
        """Whether the flow can take the acquit; one before our record proves the deposit."""
        if flow.state == PesFlowState.TRANSMITTING.value:
            await service.change_state(
                session,
                flow,
                PesFlowState.TRANSMITTED,
                reason="Hélios's acknowledgement arrived before the deposit was recorded",
                helios_id=file.depot_id,
                transmitted_at=file.received_at,
                next_attempt_at=None,
                last_error=None,
            )
            service.publish_transmitted(session, flow)
        if flow.state != PesFlowState.TRANSMITTED.value:
            log.info("pes.acquit_ignored", flow_id=str(flow.id), state=flow.state)
            return False
        return True

    async def _store(self, session: AsyncSession, flow: PesFlow, file: HeliosFile) -> PesDocument:
        (stored,) = await put_held(session, self.store, file.content)
        document = PesDocument(
            flow_id=flow.id,
            role=PesDocumentRole.PES_ACQUIT.value,
            filename=file.filename,
            media_type=service.MEDIA_TYPE_XML,
            sha256=stored.sha256,
            size=stored.size,
            created_at=service.now_utc(),
        )
        session.add(document)
        return document


@dataclass
class RetourFetcher:
    """Fetches the PES_Retour files Hélios offers, periodically, and keeps each once."""

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: HeliosGateway

    async def run(self) -> None:
        while True:
            try:
                await self.fetch_once()
            except asyncio.CancelledError:
                raise
            except HeliosUnavailable as exc:
                log.warning("pes.retours_unavailable", error=str(exc))
            except Exception:
                log.exception("pes.retours_turn_failed")
            await asyncio.sleep(self.settings.pes_retour_poll_seconds)

    async def fetch_once(self) -> int:
        async with self.database.session() as session:
            cursor = await repository.load_cursor(session, RETOURS_CURSOR)
        received = await self.gateway.fetch_retours(cursor)
        for file in received:
            async with self.database.session() as session:
                await self._keep(session, file)
                await repository.save_cursor(
                    session, RETOURS_CURSOR, file.cursor, service.now_utc()
                )
                await session.commit()
        return len(received)

    async def _keep(self, session: AsyncSession, file: HeliosFile) -> None:
        if await repository.retour_known(session, file.helios_id):
            return
        try:
            header = pes_xml.read_retour(file.content)
        except Problem as exc:
            log.error("pes.retour_unreadable", filename=file.filename, detail=exc.detail)
            return
        (stored,) = await put_held(session, self.store, file.content)
        retour = PesRetour(
            helios_id=file.helios_id,
            siren=header.id_coll[:9],
            id_coll=header.id_coll,
            nom_fic=header.nom_fic,
            dte_str=header.dte_str,
            filename=file.filename,
            sha256=stored.sha256,
            size=stored.size,
            received_at=file.received_at,
        )
        session.add(retour)
        service.publish_retour(session, retour, self.settings)
        log.info("pes.retour_received", retour_id=str(retour.id), tenant=retour.siren)
