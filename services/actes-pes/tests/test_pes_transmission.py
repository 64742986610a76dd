"""PES flows to Hélios and back: deposit, acknowledgement, refusal, returns, crash safety."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest

from kanol_actes_pes.pes.helios.port import DepositReceipt, HeliosUnavailable
from kanol_actes_pes.pes.models import PesFlow
from kanol_actes_pes.pes.monitor import PesMonitor
from kanol_common.envelope import CloudEvent, decode, header_map
from kanol_common.events.pes import (
    PesFlowAcknowledged,
    PesFlowAcquitOverdue,
    PesFlowRefused,
    PesFlowTransmissionStuck,
)
from kanol_common.testing.delivery import read_topic

from .conftest import OTHER_SIREN, Pes


async def posted(pes: Pes, content: bytes | None = None) -> str:
    response = await pes.post(content if content is not None else pes.flow())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def published(pes: Pes, kafka_bootstrap: str, count: int) -> list[CloudEvent]:
    """The first ``count`` events of ``pes.events``, decoded."""
    topic = f"{pes.settings.kafka_topic_prefix}pes.events"
    records = await read_topic(kafka_bootstrap, topic, count=count)
    return [decode(header_map(record.headers), record.value) for record in records]


async def states(pes: Pes, flow_id: str) -> list[str]:
    response = await pes.http.get(f"/v1/pes/flows/{flow_id}/history", headers=pes.headers())
    assert response.status_code == 200
    return [item["state"] for item in response.json()["items"]]


async def test_a_flow_is_deposited_acknowledged_and_announced(
    pes: Pes, kafka_bootstrap: str
) -> None:
    content = pes.flow()
    flow_id = await posted(pes, content)

    await pes.transmitter.run_once()
    await pes.acquits.receive_once()

    flow = await pes.get(flow_id)
    assert flow["state"] == "acknowledged"
    assert flow["helios_id"] is not None and flow["date_ack"] is not None
    assert await states(pes, flow_id) == [
        "submitted",
        "transmitting",
        "transmitted",
        "acknowledged",
    ]
    acquit = await pes.http.get(f"/v1/pes/flows/{flow_id}/acquit", headers=pes.headers())
    assert acquit.status_code == 200
    assert b"PES_ACQUIT" in acquit.content and b'<EtatAck V="1"/>' in acquit.content

    events = await published(pes, kafka_bootstrap, 3)
    assert [event.type for event in events] == [
        "fr.kanol.pes.flow.submitted.v1",
        "fr.kanol.pes.flow.transmitted.v1",
        "fr.kanol.pes.flow.acknowledged.v1",
    ]
    acknowledged = events[2].data
    assert isinstance(acknowledged, PesFlowAcknowledged)
    assert acknowledged.flow_id == flow_id
    assert [ref.role for ref in acknowledged.documents] == ["pes_aller", "pes_acquit"]
    service = {"Authorization": f"Bearer {pes.tokens.issue(OTHER_SIREN, 'documents:read')}"}
    for ref in acknowledged.documents:
        fetched = await pes.http.get(ref.uri.removeprefix("http://actes.test"), headers=service)
        assert fetched.status_code == 200
        assert len(fetched.content) == ref.size
    fetched_flow = await pes.http.get(f"/v1/pes/flows/{flow_id}/flow", headers=service)
    assert fetched_flow.content == content


async def test_a_refusing_acknowledgement_is_recorded_with_its_numbered_errors(
    pes: Pes, kafka_bootstrap: str
) -> None:
    first = await posted(pes)
    await pes.transmitter.run_once()
    await pes.acquits.receive_once()
    assert (await pes.get(first))["state"] == "acknowledged"
    # The same bordereaux and PJ again under another file name: Hélios's duplicates.
    number = pes.numbers[-1]
    again = await posted(pes, pes.flow(number=number, nom_fic="PESALR2_AGAIN"))

    await pes.transmitter.run_once()
    await pes.acquits.receive_once()

    flow = await pes.get(again)
    assert flow["state"] == "refused"
    codes = [(e["number"], e["code"]) for e in flow["acquit_errors"]]
    assert codes[:2] == [(1, "ERREUR_DOUBLON_BORDEREAU"), (2, "ERREUR_DOUBLON_PIECE")]
    assert {code for _, code in codes[2:]} == {"ERREUR_DOUBLON_PJ"}
    assert flow["acquit_errors"][1]["piece"] == "1303"

    events = await published(pes, kafka_bootstrap, 6)
    [refused] = [event.data for event in events if isinstance(event.data, PesFlowRefused)]
    assert refused.flow_id == again
    assert [error.code for error in refused.errors][:1] == ["ERREUR_DOUBLON_BORDEREAU"]
    assert [ref.role for ref in refused.documents] == ["pes_aller", "pes_acquit"]


async def test_an_idcoll_unknown_to_helios_is_refused(pes: Pes) -> None:
    pes.helios.simulator.config.unknown_id_colls = frozenset({"75580064600099"})
    flow_id = await posted(pes)

    await pes.transmitter.run_once()
    await pes.acquits.receive_once()

    flow = await pes.get(flow_id)
    assert flow["state"] == "refused"
    assert [e["code"] for e in flow["acquit_errors"]] == ["ERREUR_SIRET"]


async def test_a_crash_after_the_deposit_does_not_deposit_twice(pes: Pes) -> None:
    flow_id = await posted(pes)

    async def crash(flow: PesFlow, receipt: DepositReceipt) -> None:
        raise RuntimeError("killed after the deposit, before its record")

    pes.transmitter.after_deposit = crash
    with pytest.raises(RuntimeError, match="killed"):
        await pes.transmitter.run_once()
    assert (await pes.get(flow_id))["state"] == "transmitting"
    pes.transmitter.after_deposit = None

    await pes.transmitter.recover_all()

    assert (await pes.get(flow_id))["state"] == "transmitted"
    assert len(pes.helios.simulator.deposits) == 1
    assert "recovered" in " ".join(
        str(item["reason"])
        for item in (
            await pes.http.get(f"/v1/pes/flows/{flow_id}/history", headers=pes.headers())
        ).json()["items"]
    )


async def test_helios_down_postpones_then_the_same_key_deposits_once(pes: Pes) -> None:
    flow_id = await posted(pes)
    pes.helios.simulator.config.failure_rate = 1.0

    await pes.transmitter.run_once()

    flow = await pes.get(flow_id)
    assert flow["state"] == "transmitting"
    assert "503" in (flow["last_error"] or "")
    assert pes.helios.simulator.deposits == {}

    pes.helios.simulator.config.failure_rate = 0.0
    await pes.transmitter.recover_all()
    await pes.acquits.receive_once()

    assert (await pes.get(flow_id))["state"] == "acknowledged"
    assert len(pes.helios.simulator.deposits) == 1


async def test_returns_are_fetched_once_stored_and_listed(pes: Pes) -> None:
    await posted(pes)
    await pes.transmitter.run_once()
    await pes.acquits.receive_once()

    assert await pes.retours.fetch_once() == 1
    assert await pes.retours.fetch_once() == 0

    listed = await pes.http.get("/v1/pes/retours", headers=pes.headers())
    assert listed.status_code == 200
    [retour] = listed.json()["items"]
    assert retour["id_coll"] == "75580064600099"
    assert retour["nom_fic"].startswith("PES2R_DEP_P_244_00_010001_")
    content = await pes.http.get(f"/v1/pes/retours/{retour['id']}/content", headers=pes.headers())
    assert content.status_code == 200 and b"PES_Retour" in content.content
    other = pes.headers(OTHER_SIREN)
    assert (await pes.http.get("/v1/pes/retours", headers=other)).json()["items"] == []
    assert (await pes.http.get(f"/v1/pes/retours/{retour['id']}", headers=other)).status_code == 404


async def test_flows_are_listed_newest_first_filtered_and_paged(pes: Pes) -> None:
    ids = [await posted(pes) for _ in range(3)]
    await pes.transmitter.transmit(uuid.UUID(ids[0]))

    first = await pes.http.get("/v1/pes/flows", params={"limit": 2}, headers=pes.headers())
    body: dict[str, Any] = first.json()
    assert [item["id"] for item in body["items"]] == [ids[2], ids[1]]
    assert body["next_cursor"]
    second = await pes.http.get(
        "/v1/pes/flows", params={"limit": 2, "cursor": body["next_cursor"]}, headers=pes.headers()
    )
    assert [item["id"] for item in second.json()["items"]] == [ids[0]]
    assert second.json()["next_cursor"] is None

    submitted = await pes.http.get(
        "/v1/pes/flows", params={"state": "submitted"}, headers=pes.headers()
    )
    assert {item["id"] for item in submitted.json()["items"]} == {ids[1], ids[2]}
    by_name = await pes.http.get(
        "/v1/pes/flows", params={"nom_fic": f"PESALR2_T{pes.numbers[1]}"}, headers=pes.headers()
    )
    assert [item["id"] for item in by_name.json()["items"]] == [ids[1]]
    bad = await pes.http.get("/v1/pes/flows", params={"cursor": "%%%"}, headers=pes.headers())
    assert bad.status_code == 400
    other = await pes.http.get("/v1/pes/flows", headers=pes.headers(OTHER_SIREN))
    assert other.json()["items"] == []


async def test_a_flow_without_acknowledgement_past_the_delay_is_reported_once(
    pes: Pes, kafka_bootstrap: str
) -> None:
    flow_id = await posted(pes)
    await pes.transmitter.run_once()
    context = pes.app.state.pes
    impatient = context.settings.model_copy(update={"pes_acquit_overdue_seconds": 0.001})
    pes.app.state.pes = dataclasses.replace(context, settings=impatient)
    await asyncio.sleep(0.01)
    monitor = PesMonitor(pes.app.state.runtime.database, impatient)

    flow = await pes.get(flow_id)
    overdue = await pes.http.get("/v1/pes/flows", params={"overdue": "true"}, headers=pes.headers())
    counts = await monitor.check_once()
    counts_again = await monitor.check_once()

    assert flow["state"] == "transmitted" and flow["acquit_overdue"] is True
    assert [item["id"] for item in overdue.json()["items"]] == [flow_id]
    assert counts == counts_again == (1, 0)
    events = await published(pes, kafka_bootstrap, 3)
    assert [event.type for event in events] == [
        "fr.kanol.pes.flow.submitted.v1",
        "fr.kanol.pes.flow.transmitted.v1",
        "fr.kanol.pes.flow.acquit_overdue.v1",
    ]
    late = events[2].data
    assert isinstance(late, PesFlowAcquitOverdue)
    assert (late.flow_id, late.allowed_seconds) == (flow_id, 0.001)


async def test_a_flow_helios_does_not_take_is_reported_stuck_once(
    pes: Pes, kafka_bootstrap: str
) -> None:
    flow_id = await posted(pes)
    pes.transmitter.gateway = _Unreachable()
    await pes.transmitter.run_once()  # stays transmitting: Hélios cannot be reached
    context = pes.app.state.pes
    impatient = context.settings.model_copy(update={"transmission_stuck_seconds": 0.001})
    await asyncio.sleep(0.01)
    monitor = PesMonitor(pes.app.state.runtime.database, impatient)

    counts = await monitor.check_once()
    counts_again = await monitor.check_once()

    assert (await pes.get(flow_id))["state"] == "transmitting"
    assert counts == counts_again == (0, 1)
    events = await published(pes, kafka_bootstrap, 2)
    assert [event.type for event in events] == [
        "fr.kanol.pes.flow.submitted.v1",
        "fr.kanol.pes.flow.transmission_stuck.v1",
    ]
    stuck = events[1].data
    assert isinstance(stuck, PesFlowTransmissionStuck)
    assert stuck.flow_id == flow_id and "unreachable" in (stuck.last_error or "")


class _Unreachable:
    """Hélios's gateway as seen from a network that lost it."""

    async def deposit(self, deposit: Any) -> Any:
        raise HeliosUnavailable("Hélios unreachable: connection refused")

    async def find_deposit(self, idempotency_key: str) -> Any:
        raise HeliosUnavailable("Hélios unreachable: connection refused")
