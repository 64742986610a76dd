"""Late actes are reported, not discovered hours later: transmitted without an
acknowledgement beyond ``acknowledgement_overdue_seconds``, or stuck ``transmitting`` beyond
``transmission_stuck_seconds``. Each is reported once (event + API field), and gauges give
how many are late and how many wait for the hourly volume.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Gauge

from kanol_actes_pes import repository, service
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common import outbox
from kanol_common.db import Database, as_utc
from kanol_common.events.actes import ActeAcknowledgementOverdue, ActeTransmissionStuck
from kanol_common.logging import get_logger

log = get_logger(__name__)

ACTES_LATE = Gauge(
    "kanol_actes_late",
    "Actes late: transmitted without acknowledgement (overdue) or stuck transmitting (stuck)",
    ["kind"],
)
ACTES_WAITING = Gauge(
    "kanol_actes_waiting_for_transmission", "Actes waiting to be sent to the prefecture"
)
ACTES_WAITING_FOR_CAPACITY = Gauge(
    "kanol_actes_waiting_for_capacity",
    "Actes held back because the hourly volume towards the prefecture is used up",
)


@dataclass
class Monitor:
    database: Database
    settings: ActesPesSettings

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor.turn_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(self.settings.monitor_poll_seconds)

    async def check_once(self) -> int:
        """Report what became late since the last turn; the number reported."""
        now = service.now_utc()
        settings = self.settings
        overdue_cutoff = now - timedelta(seconds=settings.acknowledgement_overdue_seconds)
        stuck_cutoff = now - timedelta(seconds=settings.transmission_stuck_seconds)
        reported = 0
        async with self.database.session() as session:
            for acte in await repository.acknowledgement_overdue(session, overdue_cutoff, 500):
                assert acte.transmitted_at is not None
                acte.acknowledgement_overdue_at = now
                session.add(acte)
                outbox.publish(
                    session,
                    ActeAcknowledgementOverdue(
                        acte_id=str(acte.id),
                        siren=acte.siren,
                        identifiant_acte=acte.identifiant_acte,
                        transmitted_at=as_utc(acte.transmitted_at),
                        overdue_since=now,
                        allowed_seconds=settings.acknowledgement_overdue_seconds,
                    ),
                    subject=str(acte.id),
                    tenant=acte.siren,
                )
                log.warning("acte.acknowledgement_overdue", acte_id=str(acte.id), tenant=acte.siren)
                reported += 1
            for acte, since in await repository.transmission_stuck(session, stuck_cutoff, 500):
                acte.transmission_stuck_at = now
                session.add(acte)
                outbox.publish(
                    session,
                    ActeTransmissionStuck(
                        acte_id=str(acte.id),
                        siren=acte.siren,
                        identifiant_acte=acte.identifiant_acte,
                        transmitting_since=as_utc(since),
                        attempts=acte.transmission_attempts,
                        last_error=acte.last_error,
                    ),
                    subject=str(acte.id),
                    tenant=acte.siren,
                )
                log.warning("acte.transmission_stuck", acte_id=str(acte.id), tenant=acte.siren)
                reported += 1
            await session.commit()
            counts = await repository.count_by(session)
        ACTES_LATE.labels(kind="overdue").set(counts["overdue"])
        ACTES_LATE.labels(kind="stuck").set(counts["stuck"])
        ACTES_WAITING.set(counts["waiting"])
        return reported
