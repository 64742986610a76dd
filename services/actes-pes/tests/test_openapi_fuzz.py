"""Schemathesis fuzzes every operation of the OpenAPI, ACTES and PES, with a valid token: the
service answers every generated request, valid or not, without a server error (5xx)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

from .conftest import (
    HELIOS_URL,
    PES_SIREN,
    SIMULATOR_URL,
    SIREN,
    actes_settings,
    seed_test_organisations,
)


@dataclass(frozen=True)
class ApiPart:
    path_regex: str
    siren: str
    scopes: str
    operations: int  # so that a route left out of the OpenAPI fails the test
    examples_per_operation: int


ACTES = ApiPart(
    r"^/v1/(actes|classifications)", SIREN, "actes:write actes:read documents:read", 11, 30
)
PES = ApiPart(r"^/v1/pes/", PES_SIREN, "pes:write pes:read documents:read", 9, 25)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    tokens: TokenFactory,
) -> Iterator[str]:
    """actes-pes served by uvicorn in a thread of its own, as schemathesis calls over HTTP."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = actes_settings(
        postgres_database("fuzz"), kafka_bootstrap, folder / "data", helios_url=HELIOS_URL
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


@pytest.mark.parametrize("part", [ACTES, PES], ids=["actes", "pes"])
def test_no_server_error(part: ApiPart, served: str, tokens: TokenFactory) -> None:
    # Hypothesis driven per operation here rather than through schemathesis' pytest
    # plugin, whose lazy fixtures do not work with this pytest's version.
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    token = tokens.issue(part.siren, part.scopes)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [
        result.ok() for result in schema.include(path_regex=part.path_regex).get_all_operations()
    ]
    assert len(operations) == part.operations
    statuses: set[int] = set()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=part.examples_per_operation,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=served, headers=headers, timeout=30)
            statuses.add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        no_server_error()

    # The token was good: requests got through to the routes, not only refusals.
    assert any(200 <= status < 300 for status in statuses), statuses
    assert any(400 <= status < 500 for status in statuses), statuses
