"""actes-pes running for real: PostgreSQL, Kafka under a topic prefix of its own, and the
prefecture simulator served in-process (its ASGI app behind the real HTTP client)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kanol_actes_pes.app import create_app
from kanol_actes_pes.pes.helios.http_client import HttpHeliosGateway
from kanol_actes_pes.pes.testing import TestPki, reshape_flow
from kanol_actes_pes.pes.transmitter import AcquitReceiver, PesTransmitter, RetourFetcher
from kanol_actes_pes.prefecture.http_client import HttpPrefectureGateway
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.simulators.helios.app import HeliosConfig, HeliosSimulator
from kanol_actes_pes.simulators.helios.app import create_simulator_app as create_helios_app
from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig, create_simulator_app
from kanol_actes_pes.testing import make_pdf
from kanol_actes_pes.transmitter import Receiver, Transmitter
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.delivery import count_rows
from kanol_common.testing.organisations import seed_organisation

SIREN = "213502388"
OTHER_SIREN = "200023414"
BASE_URL = "http://actes.test"
SIMULATOR_URL = "http://prefecture.test"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="session")
def pdf() -> bytes:
    return make_pdf()


@dataclass
class Simulator:
    app: FastAPI
    http: httpx.AsyncClient
    gateway: HttpPrefectureGateway

    async def transmissions(self, **query: str) -> list[dict[str, Any]]:
        response = await self.http.get("/v1/transmissions", params=query)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["transmissions"]
        return found


async def running_simulator(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    app = create_simulator_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as http:
        yield Simulator(app=app, http=http, gateway=HttpPrefectureGateway(http, timeout=10.0))


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[Simulator]:
    config = SimulatorConfig(state_path=tmp_path / "prefecture.sqlite3", seed=1)
    async for running in running_simulator(config):
        yield running


@dataclass
class Actes:
    """The service under test, its settings, and what tests ask of it."""

    app: FastAPI
    settings: ActesPesSettings
    http: httpx.AsyncClient
    tokens: TokenFactory
    simulator: Simulator
    numbers: list[int] = field(default_factory=list)

    @property
    def transmitter(self) -> Transmitter:
        transmitter: Transmitter = self.app.state.actes.transmitter
        return transmitter

    @property
    def receiver(self) -> Receiver:
        receiver: Receiver = self.app.state.receiver
        return receiver

    def headers(self, siren: str = SIREN, scopes: str = "actes:write actes:read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(siren, scopes)}"}

    def metadata(self, **overrides: Any) -> dict[str, Any]:
        """Metadata of a valid acte, with a numéro interne no other test uses."""
        values: dict[str, Any] = {
            "numero_interne": f"T{uuid.uuid4().hex[:10].upper()}",
            "nature": 1,
            "matiere": "7.1.3",
            "objet": "Budget primitif 2024 – vote des taux d’imposition",
            "date_decision": date.today().isoformat(),
        }
        values.update(overrides)
        return values

    async def submit(
        self,
        metadata: dict[str, Any] | None = None,
        document: bytes | None = None,
        *,
        content_type: str = "application/pdf",
        headers: dict[str, str] | None = None,
        annexes: list[bytes] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        content = document if document is not None else make_pdf()
        files: list[tuple[str, tuple[str | None, bytes, str]]] = [
            (
                "metadata",
                (None, json.dumps(metadata or self.metadata()).encode(), "application/json"),
            ),
            ("acte", ("deliberation.pdf", content, content_type)),
        ]
        for number, annexe in enumerate(annexes or [], start=1):
            files.append(("annexes", (f"annexe-{number}.pdf", annexe, "application/pdf")))
        sent_headers = dict(headers if headers is not None else self.headers())
        if idempotency_key is not None:
            sent_headers["Idempotency-Key"] = idempotency_key
        return await self.http.post("/v1/actes", files=files, headers=sent_headers)

    async def counts(self) -> dict[str, int]:
        database = self.app.state.runtime.database
        objects = self.settings.objects_dir()
        return {
            "acte": await count_rows(database, "acte"),
            "acte_document": await count_rows(database, "acte_document"),
            "acte_state_change": await count_rows(database, "acte_state_change"),
            "outbox": await count_rows(database, "kanol_outbox"),
            "objects": sum(1 for path in objects.rglob("*") if path.is_file()),
        }

    async def acte(self, acte_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/actes/{acte_id}", headers=self.headers())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def actes_settings(
    database_url: str | None, kafka_bootstrap: str, data_dir: Path, **overrides: Any
) -> ActesPesSettings:
    """Settings for one test; without a database URL, the embedded SQLite file."""
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "kafka_bootstrap": kafka_bootstrap,
        "kafka_topic_prefix": f"test-{uuid.uuid4().hex[:10]}.",
        "public_url": BASE_URL,
        "prefecture_url": SIMULATOR_URL,
        "outbox_poll_seconds": 0.2,
        "kafka_start_timeout_seconds": 10.0,
        "transmit_poll_seconds": 0.2,
        "prefecture_poll_wait_seconds": 0.5,
        "background_tasks": False,
        # Tests that want the 7-1 at start ask for it; others keep actes.events to actes.
        "classification_request_at_start": False,
    }
    values.update(overrides)
    return ActesPesSettings(**values)


async def seed_test_organisations(app: FastAPI) -> None:
    """The organisations tests submit for, subscribed to every service (identity's projection)."""
    for siren in (SIREN, OTHER_SIREN, PES_SIREN):
        await seed_organisation(app.state.runtime.database, siren)


async def running_actes(
    settings: ActesPesSettings, tokens: TokenFactory, simulator: Simulator
) -> AsyncIterator[Actes]:
    app = create_app(settings, gateway=simulator.gateway)
    app.state.token_verifier = tokens.verifier()
    async with app.router.lifespan_context(app):
        await seed_test_organisations(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield Actes(app, settings, http, tokens, simulator)


@pytest.fixture
async def actes(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path: Path,
    tokens: TokenFactory,
    simulator: Simulator,
) -> AsyncIterator[Actes]:
    """A fresh service (its own database, topics and folder) driven by hand: no tasks."""
    settings = actes_settings(postgres_database("actes"), kafka_bootstrap, tmp_path / "data")
    async for running in running_actes(settings, tokens, simulator):
        yield running


# -- PES V2 (helper D): the Hélios simulator in-process and a service set for PES flows --

PES_SIREN = "755800646"  # the SIREN of the IdColl of the sample flow in data/pes
PES_SAMPLE = DATA / "pes" / "PESALR2_25060187900027_190328_001.xml"
HELIOS_URL = "http://helios.test"


@dataclass
class Helios:
    app: FastAPI
    http: httpx.AsyncClient
    gateway: HttpHeliosGateway

    @property
    def simulator(self) -> HeliosSimulator:
        simulator: HeliosSimulator = self.app.state.simulator
        return simulator


@pytest.fixture
async def helios() -> AsyncIterator[Helios]:
    app = create_helios_app(HeliosConfig(seed=1))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=HELIOS_URL) as http:
        yield Helios(app=app, http=http, gateway=HttpHeliosGateway(http, timeout=10.0))


@pytest.fixture(scope="session")
def pki() -> TestPki:
    return TestPki.create()


@dataclass
class Pes:
    """actes-pes with the Hélios simulator, driven by hand (no background tasks)."""

    app: FastAPI
    settings: ActesPesSettings
    http: httpx.AsyncClient
    tokens: TokenFactory
    helios: Helios
    pki: TestPki
    numbers: list[int] = field(default_factory=list)

    @property
    def transmitter(self) -> PesTransmitter:
        transmitter: PesTransmitter = self.app.state.pes.transmitter
        return transmitter

    @property
    def acquits(self) -> AcquitReceiver:
        receiver: AcquitReceiver = self.app.state.pes_acquits
        return receiver

    @property
    def retours(self) -> RetourFetcher:
        fetcher: RetourFetcher = self.app.state.pes_retours
        return fetcher

    def headers(self, siren: str = PES_SIREN, scopes: str = "pes:write pes:read") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(siren, scopes)}"}

    def flow(self, **changes: Any) -> bytes:
        """The sample flow, renamed and renumbered (never a duplicate), signed by the test PKI."""
        number = len(self.numbers) + 1 + uuid.uuid4().int % 100_000
        self.numbers.append(number)
        values: dict[str, Any] = {"nom_fic": f"PESALR2_T{number}", "number": number}
        values["pki"] = self.pki
        values.update(changes)
        return reshape_flow(PES_SAMPLE.read_bytes(), **values)

    async def post(
        self,
        content: bytes,
        *,
        content_type: str = "application/xml",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers if headers is not None else self.headers())
        sent["Content-Type"] = content_type
        return await self.http.post("/v1/pes/flows", content=content, headers=sent)

    async def counts(self) -> dict[str, int]:
        database = self.app.state.runtime.database
        objects = self.settings.objects_dir()
        return {
            "pes_flow": await count_rows(database, "pes_flow"),
            "pes_document": await count_rows(database, "pes_document"),
            "pes_state_change": await count_rows(database, "pes_state_change"),
            "outbox": await count_rows(database, "kanol_outbox"),
            "objects": sum(1 for path in objects.rglob("*") if path.is_file()),
        }

    async def get(self, flow_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/pes/flows/{flow_id}", headers=self.headers())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def pes(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path: Path,
    tokens: TokenFactory,
    simulator: Simulator,
    helios: Helios,
    pki: TestPki,
) -> AsyncIterator[Pes]:
    anchors = tmp_path / "pes-anchors.pem"
    anchors.write_bytes(pki.ca_pem())
    settings = actes_settings(
        postgres_database("pes"),
        kafka_bootstrap,
        tmp_path / "data",
        helios_url=HELIOS_URL,
        pes_trust_anchors_file=anchors,
        helios_poll_wait_seconds=0.0,
    )
    app = create_app(settings, gateway=simulator.gateway, helios=helios.gateway)
    app.state.token_verifier = tokens.verifier()
    async with app.router.lifespan_context(app):
        await seed_test_organisations(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield Pes(app, settings, http, tokens, helios, pki)
