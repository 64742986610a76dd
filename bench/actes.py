"""ACTES throughput: actes per second through submission, packaging and transmission, and
the acknowledgement (with its stamped PDF), the prefecture simulator answering at once.

actes-pes runs in this process on PostgreSQL and a broker of its own, the simulator behind
the real HTTP client (ASGI, no network); each stage is driven to completion in turn so its
rate is its own. Then bench/pes.py's figures, when that module is present. Prints figures;
asserts nothing about them.

    uv run python -m bench.actes --actes 300 --annexes 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.infra import kafka, percentile, postgres_database
from kanol_actes_pes.app import create_app
from kanol_actes_pes.prefecture.http_client import HttpPrefectureGateway
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig, create_simulator_app
from kanol_actes_pes.testing import make_pdf
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.organisations import seed_organisation

SIREN = "213502388"
CONCURRENCY = 16


def _form(numero: str, pdf: bytes, annexes: int) -> list[tuple[str, Any]]:
    metadata = {
        "numero_interne": numero,
        "nature": 1,
        "matiere": "7.1.3",
        "objet": "Tarifs des services publics",
        "date_decision": date.today().isoformat(),
        "annexes": [{"type_piece": "21_RP"}] * annexes,
    }
    form: list[tuple[str, Any]] = [
        ("metadata", (None, json.dumps(metadata), "application/json")),
        ("acte", ("acte.pdf", pdf, "application/pdf")),
    ]
    form += [("annexes", (f"annexe{n}.pdf", pdf, "application/pdf")) for n in range(annexes)]
    return form


async def _submit_all(
    http: httpx.AsyncClient, headers: dict[str, str], count: int, annexes: int
) -> list[float]:
    pdf = make_pdf(2)
    run_id = uuid.uuid4().hex[:6].upper()
    limit = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(index: int) -> None:
        async with limit:
            started = time.perf_counter()
            response = await http.post(
                "/v1/actes", files=_form(f"B{run_id}_{index}", pdf, annexes), headers=headers
            )
            if response.status_code != 201:
                raise RuntimeError(f"submission refused: {response.text[:300]}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one(index) for index in range(count)))
    return latencies


async def run(folder: Path, bootstrap: str, database_url: str, count: int, annexes: int) -> None:
    settings = ActesPesSettings(
        environment="test",
        data_dir=folder,
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        kafka_topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.",
        public_url="http://actes.bench",
        background_tasks=False,
        classification_request_at_start=False,
        prefecture_max_per_hour=1_000_000,
        transmit_batch_size=100,
        log_level="WARNING",
    )
    simulator = create_simulator_app(
        SimulatorConfig(state_path=folder / "prefecture.sqlite3", max_per_hour=1_000_000)
    )
    gateway_http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator), base_url="http://prefecture.bench"
    )
    app = create_app(settings, gateway=HttpPrefectureGateway(gateway_http, timeout=30))
    tokens = TokenFactory()
    app.state.token_verifier = tokens.verifier()
    headers = {"Authorization": f"Bearer {tokens.issue(SIREN, 'actes:write actes:read')}"}

    async with app.router.lifespan_context(app):
        await seed_organisation(app.state.runtime.database, SIREN)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://actes.bench") as http:
            started = time.perf_counter()
            latencies = await _submit_all(http, headers, count, annexes)
            submitted = time.perf_counter() - started

            transmitter = app.state.actes.transmitter
            started = time.perf_counter()
            while await transmitter.run_once():
                pass
            transmitted = time.perf_counter() - started

            receiver = app.state.receiver
            started = time.perf_counter()
            received = 0
            while received < count:
                got = await receiver.fetch_once(wait_seconds=1)
                if got == 0:
                    break
                received += got
            acknowledged = time.perf_counter() - started

    await gateway_http.aclose()
    print(f"actes: {count} actes of a 2-page PDF and {annexes} annexe(s), in process, PostgreSQL")
    print(
        f"  submission (POST /v1/actes, {CONCURRENCY} at once): {count / submitted:.1f} actes/s,"
        f" latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )
    print(
        f"  packaging + transmission (tar.gz, XSD, send, record): {count / transmitted:.1f} actes/s"
    )
    print(
        f"  acknowledgement (ARActe read, PDF stamped, event): {received / acknowledged:.1f}"
        f" actes/s ({received} replies)"
    )
    end_to_end = submitted + transmitted + acknowledged
    print(f"  whole transaction, stage after stage: {count / end_to_end:.1f} actes/s")


async def _pes() -> None:
    try:
        from bench import pes
    except ImportError:
        return
    await pes.run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.actes", description=__doc__)
    parser.add_argument("--actes", type=int, default=300)
    parser.add_argument("--annexes", type=int, default=1)
    parser.add_argument("--skip-pes", action="store_true", help="do not run bench/pes.py")
    arguments = parser.parse_args()

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="kanol-bench-") as folder:
        database = postgres_database("actes_pes")
        asyncio.run(run(Path(folder), bootstrap, database, arguments.actes, arguments.annexes))
    if not arguments.skip_pes:
        asyncio.run(_pes())


if __name__ == "__main__":
    main()
