"""Schemathesis fuzzes every actes operation of the OpenAPI with a valid token: the service
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
from kanol_actes_pes.prefecture.http_client import HttpPrefectureGateway
from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig, create_simulator_app
from kanol_common.testing.auth import TokenFactory

from .conftest import SIMULATOR_URL, SIREN, actes_settings, seed_test_organisations

ACTES_OPERATIONS = r"^/v1/(actes|classifications)"
EXAMPLES_PER_OPERATION = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served_actes(
    postgres_database: Callable[[str], str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    tokens: TokenFactory,
) -> Iterator[str]:
    """actes-pes served by uvicorn in a thread of its own, as schemathesis calls over HTTP."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = actes_settings(postgres_database("actes"), kafka_bootstrap, folder / "data")
    simulator = create_simulator_app(SimulatorConfig(state_path=folder / "prefecture.sqlite3"))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=simulator), base_url=SIMULATOR_URL)
    app = create_app(settings_, gateway=HttpPrefectureGateway(client, timeout=10.0))
    app.state.token_verifier = tokens.verifier()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
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


@pytest.fixture(scope="module")
def actes_schema(served_actes: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{served_actes}/openapi.json")
    return schema.include(path_regex=ACTES_OPERATIONS)


def test_no_server_error(
    actes_schema: schemathesis.BaseSchema, served_actes: str, tokens: TokenFactory
) -> None:
    # Hypothesis driven per operation here rather than through schemathesis' pytest
    # plugin, whose lazy fixtures do not work with this pytest's version.
    token = tokens.issue(SIREN, "actes:write actes:read documents:read")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in actes_schema.get_all_operations()]
    assert len(operations) >= 10
    statuses: set[int] = set()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=served_actes, headers=headers, timeout=30)
            statuses.add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        no_server_error()

    # The token was good: requests got through to the routes, not only refusals.
    assert any(200 <= status < 300 for status in statuses), statuses
    assert any(400 <= status < 500 for status in statuses), statuses
