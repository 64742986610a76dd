"""Two replicas of actes-pes on one database: each acte is transmitted, acknowledged and
announced once, whichever replica took it; one replica at a time reads the replies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from kanol_common.events.actes import ActeAcknowledged, ActeTransmitted
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import wait_until

from .conftest import Actes, Simulator, actes_settings, running_actes
from .test_transmission import events_of

ACTES = 8


async def test_two_replicas_transmit_and_acknowledge_each_acte_once(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path: Path,
    tokens: TokenFactory,
    simulator: Simulator,
) -> None:
    # One database and one document folder (a shared volume in production), two processes'
    # worth of background tasks: transmitters, senders, and the leader's reply reader.
    settings = actes_settings(
        postgres_database("replicas"), kafka_bootstrap, tmp_path / "data", background_tasks=True
    )
    replica = asynccontextmanager(running_actes)
    async with AsyncExitStack() as stack:
        replicas: list[Actes] = [
            await stack.enter_async_context(replica(settings, tokens, simulator)) for _ in range(2)
        ]
        ids = []
        for index in range(ACTES):
            submitted = await replicas[index % 2].submit()
            assert submitted.status_code == 201, submitted.text
            ids.append(submitted.json()["id"])

        async def all_acknowledged() -> bool:
            states = [(await replicas[0].acte(acte_id))["state"] for acte_id in ids]
            return states == ["acknowledged"] * ACTES

        await wait_until(all_acknowledged, wait_seconds=30, what="every acte acknowledged")
        identifiants = [(await replicas[1].acte(acte_id))["identifiant_acte"] for acte_id in ids]

    transmissions = await simulator.transmissions()
    sent = Counter(t["identifiant_acte"] for t in transmissions)
    assert all(sent[identifiant] == 1 for identifiant in identifiants), sent
    events = await events_of(replicas[0], kafka_bootstrap, 3 * ACTES + 5, wait_seconds=5)
    acknowledged = Counter(e.acte_id for e in events if isinstance(e, ActeAcknowledged))
    transmitted = Counter(e.acte_id for e in events if isinstance(e, ActeTransmitted))
    assert acknowledged == transmitted == Counter(ids)


async def test_two_replicas_keep_to_the_hourly_volume_together(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path: Path,
    tokens: TokenFactory,
    simulator: Simulator,
) -> None:
    database_url = postgres_database("replicas_volume")
    quiet = actes_settings(database_url, kafka_bootstrap, tmp_path / "data")
    ids = []
    async with asynccontextmanager(running_actes)(quiet, tokens, simulator) as submitter:
        for _ in range(6):
            submitted = await submitter.submit()
            assert submitted.status_code == 201, submitted.text
            ids.append(submitted.json()["id"])

    # Two replicas start at once on six waiting actes, with a volume of three an hour (the
    # database migrated already: two migrations at once in one process trip alembic).
    settings = quiet.model_copy(
        update={"background_tasks": True, "prefecture_max_per_hour": 3, "run_migrations": False}
    )
    replica = asynccontextmanager(running_actes)
    async with AsyncExitStack() as stack:
        replicas: list[Actes] = list(
            await asyncio.gather(
                *(stack.enter_async_context(replica(settings, tokens, simulator)) for _ in "ab")
            )
        )

        async def states() -> Counter[str]:
            return Counter([(await replicas[0].acte(acte_id))["state"] for acte_id in ids])

        async def three_acknowledged() -> bool:
            return (await states())["acknowledged"] == 3

        await wait_until(three_acknowledged, wait_seconds=30, what="three actes acknowledged")
        # Both replicas' turns come and go: the volume, spent, holds the rest back.
        await asyncio.sleep(3 * settings.transmit_poll_seconds + 1)
        final = await states()

    assert final == Counter({"acknowledged": 3, "waiting_for_transmission": 3})
    assert len(await simulator.transmissions()) == 3
