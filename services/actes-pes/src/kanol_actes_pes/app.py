"""actes-pes's FastAPI app: the actes API, the transmitter and the receiver, on the runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from kanol_actes_pes import routes
from kanol_actes_pes.classification import ClassificationCache
from kanol_actes_pes.messages import (
    ClassificationRequester,
    MessageSender,
    request_classifications,
)
from kanol_actes_pes.monitor import Monitor
from kanol_actes_pes.pes import routes as pes_routes
from kanol_actes_pes.pes.helios.http_client import HttpHeliosGateway
from kanol_actes_pes.pes.helios.port import HeliosGateway
from kanol_actes_pes.pes.monitor import PesMonitor
from kanol_actes_pes.pes.signature import TrustAnchors
from kanol_actes_pes.pes.transmitter import AcquitReceiver, PesTransmitter, RetourFetcher
from kanol_actes_pes.prefecture.http_client import HttpPrefectureGateway
from kanol_actes_pes.prefecture.port import PrefectureGateway
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.transmitter import Receiver, Transmitter
from kanol_common.http import create_app as create_service_app
from kanol_common.leadership import Leadership, run_while_leading
from kanol_common.logging import get_logger
from kanol_common.organisations import build_organisation_consumer
from kanol_common.revocations import RevocationList
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import LocalObjectStore

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

log = get_logger(__name__)


def create_app(
    settings: ActesPesSettings | None = None,
    *,
    gateway: PrefectureGateway | None = None,
    runtime: ServiceRuntime | None = None,
    helios: HeliosGateway | None = None,
) -> FastAPI:
    """The service; ``gateway`` defaults to the HTTP client of ``settings.prefecture_url``."""
    settings = settings or ActesPesSettings()
    runtime = runtime or ServiceRuntime(settings, MIGRATIONS_DIR)
    # identity's organisations and subscriptions, for require_subscription on the routes.
    build_organisation_consumer(runtime)
    store = LocalObjectStore(settings.objects_dir())
    owned_gateway: HttpPrefectureGateway | None = None
    if gateway is None:
        owned_gateway = HttpPrefectureGateway.for_url(
            settings.prefecture_url, timeout=settings.prefecture_timeout_seconds
        )
        gateway = owned_gateway
    # The transmitter and the sender spend one hourly volume towards the prefecture.
    volume_lock = asyncio.Lock()
    transmitter = Transmitter(runtime.database, store, settings, gateway, volume_lock=volume_lock)
    owned_helios: HttpHeliosGateway | None = None
    if helios is None:
        owned_helios = HttpHeliosGateway.for_url(
            settings.helios_url, timeout=settings.helios_timeout_seconds
        )
        helios = owned_helios
    pes_transmitter = PesTransmitter(runtime.database, store, settings, helios)
    acquit_receiver = AcquitReceiver(runtime.database, store, settings, helios)
    retour_fetcher = RetourFetcher(runtime.database, store, settings, helios)
    pes_monitor = PesMonitor(runtime.database, settings)
    receiver = Receiver(runtime.database, store, settings, gateway)
    sender = MessageSender(runtime.database, store, settings, gateway, volume_lock=volume_lock)
    monitor = Monitor(runtime.database, settings)
    classifications = ClassificationCache()
    receiver.on_classification = classifications.forget
    receiver.on_newer_classification = ClassificationRequester(
        gateway, settings, runtime.database
    ).ask_soon

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The runtime has no hook for a service's own tasks: they start once it runs (the
        # database migrated, the relay started) and stop before it does.
        async with runtime.lifespan(app):
            tasks: list[asyncio.Task[None]] = []
            if settings.background_tasks:
                # One replica at a time sends to the prefecture, so that the hourly volume is
                # never passed (one replica sends far more than a prefecture takes), reads
                # the gateways' reply feeds and reports late work; every replica takes
                # submissions and sends PES flows (each claim is a compare-and-set).
                singular = [transmitter.run, sender.run, receiver.run, monitor.run]
                singular += [acquit_receiver.run, retour_fetcher.run, pes_monitor.run]
                leadership = Leadership(runtime.database, settings.service_name)
                tasks.append(
                    asyncio.create_task(
                        run_while_leading(leadership, singular), name="actes-pes-leader"
                    )
                )
                if settings.classification_request_at_start:
                    tasks.append(
                        asyncio.create_task(
                            request_classifications(runtime.database, settings, gateway),
                            name="actes-classification-requests",
                        )
                    )
                tasks.append(asyncio.create_task(pes_transmitter.run(), name="pes-transmitter"))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if owned_gateway is not None:
                    with contextlib.suppress(Exception):
                        await owned_gateway.aclose()
                if owned_helios is not None:
                    with contextlib.suppress(Exception):
                        await owned_helios.aclose()

    app = create_service_app(
        settings,
        title="Kanol actes-pes",
        description="Télétransmission of actes to the prefecture (@CTES).",
        routers=[routes.router, routes.classifications, pes_routes.router],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # Tokens of clients and agents identity cut off are refused from the moment it is known.
    app.state.revocations = RevocationList(runtime.database)
    app.state.actes = routes.ActesContext(
        settings=settings,
        store=store,
        transmitter=transmitter,
        sender=sender,
        gateway=gateway,
        classifications=classifications,
    )
    app.state.receiver = receiver
    app.state.actes_sender = sender
    app.state.actes_monitor = monitor
    app.state.pes = pes_routes.PesContext(
        settings=settings,
        store=store,
        anchors=TrustAnchors.from_file(settings.pes_trust_anchors_file, settings.pes_crl_files),
        transmitter=pes_transmitter,
    )
    app.state.pes_acquits = acquit_receiver
    app.state.pes_retours = retour_fetcher
    app.state.pes_monitor = pes_monitor
    return app
