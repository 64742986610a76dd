"""Flows that stall: deposited without an acknowledgement, or stuck before Hélios took them.

Reference tools had PES flows left "sent" for days with nobody told. The monitor counts,
each turn, the flows ``transmitted`` for longer than ``pes_acquit_overdue_seconds`` without
a PES_ACQUIT and those ``transmitting`` for longer than ``transmission_stuck_seconds``
(Hélios unreachable, retried with backoff), exposes both as Prometheus gauges, and logs a
warning naming the oldest. The API shows ``acquit_overdue`` on each flow and filters on it.

TODO: no event is published for an overdue flow yet, so nobody is notified by mail or in
the authorities' software; an operator's alert rule on the gauges is the way for now.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Gauge

from kanol_actes_pes.pes import repository, service
from kanol_actes_pes.pes.models import PesFlowState
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.db import Database
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
        now = service.now_utc()
        stuck_cutoff = now - timedelta(seconds=self.settings.transmission_stuck_seconds)
        async with self.database.session() as session:
            overdue = await repository.stalled(
                session, PesFlowState.TRANSMITTED, overdue_cutoff(self.settings, now)
            )
            stuck = await repository.stalled(session, PesFlowState.TRANSMITTING, stuck_cutoff)
        PES_ACQUIT_OVERDUE.set(len(overdue))
        PES_TRANSMISSION_STUCK.set(len(stuck))
        if overdue:
            log.warning("pes.acquit_overdue", count=len(overdue), oldest=str(overdue[0]))
        if stuck:
            log.warning("pes.transmission_stuck", count=len(stuck), oldest=str(stuck[0]))
        return len(overdue), len(stuck)
