"""Schemathesis fuzzes every PES operation of the OpenAPI with a valid token: the service
answers every generated request, valid or not, without a server error (5xx)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from kanol_actes_pes.app import create_app
from kanol_actes_pes.pes.helios.http_client import HttpHeliosGateway
from kanol_actes_pes.prefecture.http_client import HttpPrefectureGateway
from kanol_actes_pes.simulators.helios.app import HeliosConfig
from kanol_actes_pes.simulators.helios.app import create_simulator_app as create_helios_app
from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig, create_simulator_app
from kanol_common.testing.auth import TokenFactory

from .conftest import HELIOS_URL, PES_SIREN, SIMULATOR_URL, actes_settings, seed_test_organisations

PES_OPERATIONS = r"^/v1/pes/"
EXAMPLES_PER_OPERATION = 25


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served_pes(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    tokens: TokenFactory,
) -> Iterator[str]:
    """actes-pes served by uvicorn in a thread of its own, as schemathesis calls over HTTP."""
    folder: Path = tmp_path_factory.mktemp("pes-fuzz")
    settings_ = actes_settings(
        postgres_database("pes_fuzz"), kafka_bootstrap, folder / "data", helios_url=HELIOS_URL
    )
    prefecture = create_simulator_app(SimulatorConfig(state_path=folder / "prefecture.sqlite3"))
    prefecture_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=prefecture), base_url=SIMULATOR_URL
    )
    helios_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_helios_app(HeliosConfig())), base_url=HELIOS_URL
    )
    app = create_app(
        settings_,
        gateway=HttpPrefectureGateway(prefecture_client, timeout=10.0),
        helios=HttpHeliosGateway(helios_client, timeout=10.0),
    )
    app.state.token_verifier = tokens.verifier()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    ready = threading.Event()

    async def serve() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn's flag
            await asyncio.sleep(0.05)
        await seed_test_organisations(app)
        ready.set()
        await serving

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(60), "actes-pes did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_no_server_error_on_pes_operations(served_pes: str, tokens: TokenFactory) -> None:
    schema = schemathesis.openapi.from_url(f"{served_pes}/openapi.json")
    pes_schema = schema.include(path_regex=PES_OPERATIONS)
    token = tokens.issue(PES_SIREN, "pes:write pes:read documents:read")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in pes_schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=served_pes, headers=headers, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        no_server_error()
