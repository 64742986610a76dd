"""Flows that stall: deposited without an acknowledgement, or stuck before Hélios took them.

Reference tools had PES flows left "sent" for days with nobody told. The monitor counts,
each turn, the flows ``transmitted`` for longer than ``pes_acquit_overdue_seconds`` without
a PES_ACQUIT and those ``transmitting`` for longer than ``transmission_stuck_seconds``
(Hélios unreachable, retried with backoff) and exposes both as Prometheus gauges. Each flow
that became late is reported once (until its state changes): an event on ``pes.events``
(``PesFlowAcquitOverdue``, ``PesFlowTransmissionStuck``) for whoever must act, and a warning
in the log. The API shows ``acquit_overdue`` on each flow and filters on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Gauge
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.pes import repository, service
from kanol_actes_pes.pes.models import PesFlow, PesFlowState
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common import outbox
from kanol_common.db import Database, as_utc
from kanol_common.events.pes import PesFlowAcquitOverdue, PesFlowTransmissionStuck
from kanol_common.logging import get_logger

log = get_logger(__name__)

PES_ACQUIT_OVERDUE = Gauge(
    "kanol_pes_flows_acquit_overdue",
    "PES flows deposited at Hélios without an acknowledgement past the configured delay",
)
PES_TRANSMISSION_STUCK = Gauge(
    "kanol_pes_flows_transmission_stuck",
    "PES flows not yet taken by Hélios past the configured delay",
)


def overdue_cutoff(settings: ActesPesSettings, now: datetime) -> datetime:
    return now - timedelta(seconds=settings.pes_acquit_overdue_seconds)


@dataclass
class PesMonitor:
    database: Database
    settings: ActesPesSettings

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pes.monitor_turn_failed")
            await asyncio.sleep(self.settings.monitor_poll_seconds)

    async def check_once(self) -> tuple[int, int]:
        """Report the flows late since the last turn; how many are overdue and stuck now."""
        now = service.now_utc()
        overdue_before = overdue_cutoff(self.settings, now)
        stuck_before = now - timedelta(seconds=self.settings.transmission_stuck_seconds)
        async with self.database.session() as session:
            for flow in await repository.late_unreported(
                session, PesFlowState.TRANSMITTED, overdue_before
            ):
                self._report_overdue(session, flow, now)
            for flow in await repository.late_unreported(
                session, PesFlowState.TRANSMITTING, stuck_before
            ):
                self._report_stuck(session, flow, now)
            await session.commit()

            overdue = await repository.stalled(session, PesFlowState.TRANSMITTED, overdue_before)
            stuck = await repository.stalled(session, PesFlowState.TRANSMITTING, stuck_before)
        PES_ACQUIT_OVERDUE.set(len(overdue))
        PES_TRANSMISSION_STUCK.set(len(stuck))
        return len(overdue), len(stuck)

    def _report_overdue(self, session: AsyncSession, flow: PesFlow, now: datetime) -> None:
        assert flow.transmitted_at is not None  # set with the state transmitted
        flow.late_reported_at = now
        session.add(flow)
        event = PesFlowAcquitOverdue(
            flow_id=str(flow.id),
            siren=flow.siren,
            id_coll=flow.id_coll,
            nom_fic=flow.nom_fic,
            transmitted_at=as_utc(flow.transmitted_at),
            overdue_since=now,
            allowed_seconds=self.settings.pes_acquit_overdue_seconds,
        )
        outbox.publish(session, event, subject=str(flow.id), tenant=flow.siren)
        log.warning("pes.acquit_overdue", flow_id=str(flow.id), tenant=flow.siren)

    def _report_stuck(self, session: AsyncSession, flow: PesFlow, now: datetime) -> None:
        flow.late_reported_at = now
        session.add(flow)
        event = PesFlowTransmissionStuck(
            flow_id=str(flow.id),
            siren=flow.siren,
            id_coll=flow.id_coll,
            nom_fic=flow.nom_fic,
            transmitting_since=as_utc(flow.updated_at),
            attempts=flow.transmission_attempts,
            last_error=flow.last_error,
        )
        outbox.publish(session, event, subject=str(flow.id), tenant=flow.siren)
        log.warning("pes.transmission_stuck", flow_id=str(flow.id), tenant=flow.siren)
