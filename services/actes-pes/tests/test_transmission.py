"""An acte's way to the prefecture and back: transmitted once, acknowledged or refused."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from kanol_actes_pes.models import Acte
from kanol_actes_pes.prefecture.port import TransmissionArchive, TransmissionReceipt
from kanol_actes_pes.transmitter import Transmitter
from kanol_common.envelope import decode, header_map
from kanol_common.events.actes import (
    ActeAcknowledged,
    ActeRefused,
    ActeSubmitted,
    ActeTransmitted,
)
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import read_topic, wait_until

from .conftest import SIREN, Actes, Simulator, actes_settings, running_actes


class SimulatedCrash(BaseException):
    """The process dies: nothing in the transmitter may catch it."""


@pytest.fixture(params=["postgresql", "sqlite"])
async def live_actes(
    request: pytest.FixtureRequest,
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path: Path,
    tokens: TokenFactory,
    simulator: Simulator,
) -> AsyncIterator[Actes]:
    """The service with its transmitter and receiver running, as in production; on
    PostgreSQL, and on the embedded SQLite file of ``make up``."""
    database_url = postgres_database("actes") if request.param == "postgresql" else None
    settings = actes_settings(
        database_url, kafka_bootstrap, tmp_path / "data", background_tasks=True
    )
    async for running in running_actes(settings, tokens, simulator):
        yield running


async def events_of(
    actes: Actes, kafka_bootstrap: str, count: int, wait_seconds: float = 15.0
) -> list[Any]:
    """The first ``count`` events of the service (fewer if fewer came within the wait)."""
    topic = f"{actes.settings.kafka_topic_prefix}actes.events"
    records = await read_topic(kafka_bootstrap, topic, count=count, wait_seconds=wait_seconds)
    return [decode(header_map(record.headers), record.value).data for record in records]


async def test_submit_transmit_acknowledge(
    live_actes: Actes, kafka_bootstrap: str, pdf: bytes
) -> None:
    actes = live_actes
    trace_id = uuid.uuid4().hex
    headers = {**actes.headers(), "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    created = (await actes.submit(document=pdf, headers=headers)).json()

    async def acknowledged() -> bool:
        state: str = (await actes.acte(created["id"]))["state"]
        return state == "acknowledged"

    await wait_until(acknowledged, wait_seconds=30, what="the acte acknowledged")

    acte = await actes.acte(created["id"])
    assert acte["transmitted_at"] and acte["acknowledged_at"] and acte["date_reception"]
    roles = {document["role"]: document for document in acte["documents"]}
    assert set(roles) == {
        "acte",
        "enveloppe",
        "message",
        "archive_transmission",
        "ar_acte",
        "acte_tamponne",
    }
    stamped = await actes.http.get(roles["acte_tamponne"]["uri"], headers=actes.headers())
    first_page = PdfReader(io.BytesIO(stamped.content)).pages[0].extract_text()
    assert acte["identifiant_acte"] in first_page
    assert "Reçu en préfecture le" in first_page
    assert roles["ar_acte"]["filename"].startswith(f"{acte['identifiant_acte']}-1-2_")
    history = await actes.http.get(f"/v1/actes/{created['id']}/history", headers=actes.headers())
    assert [change["state"] for change in history.json()["items"]] == [
        "posted",
        "waiting_for_transmission",
        "transmitting",
        "transmitted",
        "acknowledged",
    ]

    ar = await actes.http.get(roles["ar_acte"]["uri"], headers=actes.headers())
    assert ar.status_code == 200
    assert b"<actes:ARActe" in ar.content
    assert acte["identifiant_acte"].encode() in ar.content

    records = await read_topic(
        kafka_bootstrap,
        f"{actes.settings.kafka_topic_prefix}actes.events",
        count=3,
        wait_seconds=15,
    )
    # Sent minutes apart by a background task, every event is in the submission's trace.
    assert [header_map(record.headers)["traceparent"].split("-")[1] for record in records] == [
        trace_id
    ] * 3
    submitted, transmitted, acknowledgement = await events_of(actes, kafka_bootstrap, 3)
    assert isinstance(submitted, ActeSubmitted)
    assert isinstance(transmitted, ActeTransmitted)
    assert isinstance(acknowledgement, ActeAcknowledged)
    assert acknowledgement.identifiant_acte == acte["identifiant_acte"]
    assert acknowledgement.date_reception.isoformat() == acte["date_reception"]
    refs = {ref.role: ref for ref in acknowledgement.documents}
    assert set(refs) == {
        "acte",
        "enveloppe",
        "message",
        "archive_transmission",
        "ar_acte",
        "acte_tamponne",
    }
    assert acknowledgement.classification_date is not None
    assert acknowledgement.type_piece == "99_DE"
    assert refs["acte"].sha256 == hashlib.sha256(pdf).hexdigest()
    # The claim check works: a service fetches each document by its URI and checks it.
    service = actes.headers(siren="200023414", scopes="documents:read")
    for ref in refs.values():
        fetched = await actes.http.get(ref.uri, headers=service)
        assert hashlib.sha256(fetched.content).hexdigest() == ref.sha256

    [transmission] = await actes.simulator.transmissions(identifiant_acte=acte["identifiant_acte"])
    assert transmission["deliveries"] == 1


async def test_a_crash_after_the_send_does_not_send_twice(actes: Actes) -> None:
    created = (await actes.submit()).json()

    async def crash(acte: Acte, receipt: TransmissionReceipt) -> None:
        raise SimulatedCrash

    doomed = Transmitter(
        actes.transmitter.database,
        actes.transmitter.store,
        actes.settings,
        actes.simulator.gateway,
        after_send=crash,
    )
    with pytest.raises(SimulatedCrash):
        await doomed.run_once()
    assert (await actes.acte(created["id"]))["state"] == "transmitting"

    # The restarted transmitter finds the acte in flight, asks the prefecture, which has it.
    restarted = Transmitter(
        actes.transmitter.database,
        actes.transmitter.store,
        actes.settings,
        actes.simulator.gateway,
    )
    assert await restarted.recover_all() == 1
    await restarted.run_once()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "transmitted"
    [transmission] = await actes.simulator.transmissions(identifiant_acte=acte["identifiant_acte"])
    assert transmission["deliveries"] == 1
    history = await actes.http.get(f"/v1/actes/{created['id']}/history", headers=actes.headers())
    assert "already had" in history.json()["items"][-1]["reason"]

    await actes.receiver.fetch_once(wait_seconds=2)
    assert (await actes.acte(created["id"]))["state"] == "acknowledged"


async def test_a_crash_before_the_send_sends_once(actes: Actes) -> None:
    created = (await actes.submit()).json()

    class LostSend(Transmitter):
        async def _send(self, acte: Acte, archive: TransmissionArchive) -> None:
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        await LostSend(
            actes.transmitter.database,
            actes.transmitter.store,
            actes.settings,
            actes.simulator.gateway,
        ).run_once()
    assert (await actes.acte(created["id"]))["state"] == "transmitting"

    await actes.transmitter.recover_all()
    await actes.transmitter.recover_all()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "transmitted"
    [transmission] = await actes.simulator.transmissions(identifiant_acte=acte["identifiant_acte"])
    assert transmission["deliveries"] == 1


async def test_two_transmitters_claim_an_acte_once(actes: Actes) -> None:
    created = (await actes.submit()).json()
    other = Transmitter(
        actes.transmitter.database,
        actes.transmitter.store,
        actes.settings,
        actes.simulator.gateway,
    )

    await asyncio.gather(actes.transmitter.run_once(), other.run_once())

    acte = await actes.acte(created["id"])
    assert acte["state"] == "transmitted"
    [transmission] = await actes.simulator.transmissions(identifiant_acte=acte["identifiant_acte"])
    assert transmission["deliveries"] == 1


async def test_an_anomalie_refuses_the_acte(actes: Actes, kafka_bootstrap: str) -> None:
    actes.simulator.app.state.simulator.config.anomaly_rate = 1.0
    created = (await actes.submit()).json()

    await actes.transmitter.run_once()
    await actes.receiver.fetch_once(wait_seconds=2)

    acte = await actes.acte(created["id"])
    assert acte["state"] == "refused"
    assert acte["refused_at"]
    assert acte["nature_anomalie"] == "099"
    assert acte["detail_anomalie"] == "Anomalie simulée"
    assert "anomalie" in {document["role"] for document in acte["documents"]}
    *_, refused = await events_of(actes, kafka_bootstrap, 3)
    assert isinstance(refused, ActeRefused)
    assert refused.nature_anomalie == "099"
    assert refused.acte_id == created["id"]


async def test_other_organisation_cannot_read_history(actes: Actes) -> None:
    created = (await actes.submit()).json()
    response = await actes.http.get(
        f"/v1/actes/{created['id']}/history",
        headers=actes.headers(siren="200023414", scopes="actes:read"),
    )
    assert response.status_code == 404
    assert SIREN not in response.text


async def test_beyond_the_hourly_volume_the_acte_queues(actes: Actes) -> None:
    actes.simulator.app.state.simulator.config.max_per_hour = 0
    created = (await actes.submit()).json()

    await actes.transmitter.run_once()
    await actes.transmitter.run_once()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "waiting_for_transmission"
    assert await actes.simulator.transmissions() == []
    history = await actes.http.get(f"/v1/actes/{created['id']}/history", headers=actes.headers())
    assert "hourly volume" in history.json()["items"][-1]["reason"]


async def test_a_refused_transmission_fails_then_is_retried(actes: Actes) -> None:
    simulator = actes.simulator.app.state.simulator
    limits = simulator.config.limits
    simulator.config.limits = type(limits)(max_archive_bytes=10)
    actes.settings.transmit_retry_base_seconds = 0.05
    created = (await actes.submit()).json()

    await actes.transmitter.run_once()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "transmission_failed"
    assert "exceeds" in acte["last_error"]

    simulator.config.limits = limits
    await asyncio.sleep(0.1)
    await actes.transmitter.run_once()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "transmitted"
    assert acte["last_error"] is None
    history = await actes.http.get(f"/v1/actes/{created['id']}/history", headers=actes.headers())
    assert [change["state"] for change in history.json()["items"]][2:] == [
        "transmitting",
        "transmission_failed",
        "waiting_for_transmission",
        "transmitting",
        "transmitted",
    ]


async def test_a_reply_before_the_send_is_recorded_counts_as_the_send(
    actes: Actes, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    created = (await actes.submit()).json()

    async def reply_first(acte: Acte, receipt: TransmissionReceipt) -> None:
        assert await actes.receiver.fetch_once(wait_seconds=2) == 1

    racing = Transmitter(
        actes.transmitter.database,
        actes.transmitter.store,
        actes.settings,
        actes.simulator.gateway,
        after_send=reply_first,
    )
    with caplog.at_level(logging.INFO):
        await racing.run_once()

    acte = await actes.acte(created["id"])
    assert acte["state"] == "acknowledged"
    # The milestone is logged once, by the reply that recorded it (structlog hands the
    # standard library its event dict).
    logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    milestones = [entry for entry in logged if entry.get("event") == "acte.transmitted"]
    assert [entry.get("recorded_by") for entry in milestones] == ["reply"]
    history = await actes.http.get(f"/v1/actes/{created['id']}/history", headers=actes.headers())
    transmitted = history.json()["items"][3]
    assert transmitted["state"] == "transmitted"
    assert "before the send was recorded" in transmitted["reason"]
    events = await events_of(actes, kafka_bootstrap, 3)
    assert [type(event) for event in events] == [ActeSubmitted, ActeTransmitted, ActeAcknowledged]
    # Once those are out, asking for one more proves there is no second ActeTransmitted.
    assert len(await events_of(actes, kafka_bootstrap, 4, wait_seconds=2.0)) == 3
