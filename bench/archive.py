"""archive's throughput: deposits from events, SEDA transfers through the API, the audit.

Runs the archive service in this process (its consumer, relay and API, on PostgreSQL and a
broker of its own), with a stand-in for the document owners and identity on loopback (the
tests' document server, in a thread of this process: its CPU counts against the figures).

1. Deposits from events: ``--deposits`` ``ActeAcknowledged`` events, each naming one
   document of ``--document-kb`` KB, are put on ``actes.events`` at once; the figure is
   the rate at which their archives appear (fetch, SHA-256 check, store, SEDA manifest
   and ATR, rows, logbook, outbox).
2. Transfers: ``--transfers`` SEDA 2.1 ZIP packages of one ``--transfer-mb`` MB file each,
   posted one after the other to ``POST /v1/transfers`` (in process, over ASGI): MB/s.
3. The audit over everything stored, unthrottled, in MB/s, against this machine's raw
   SHA-512 speed (and SHA-256 plus SHA-512, what the audit computes) over the same bytes
   in memory.

``--storage s3`` runs it all on a SeaweedFS started by scripts/s3.sh. Prints figures;
asserts nothing about them.

    uv run python -m bench.archive --deposits 300 --transfers 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func
from sqlmodel import select

from bench.infra import REPO, _run, kafka, percentile, postgres_database
from kanol_archive.app import create_app
from kanol_archive.audit import run_audit
from kanol_archive.models import Archive
from kanol_archive.settings import ArchiveSettings
from kanol_common.envelope import CloudEvent
from kanol_common.events import DocumentRef
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.runtime import ServiceRuntime
from kanol_common.storage import S3ObjectStore
from kanol_common.testing.auth import TokenFactory
from kanol_common.testing.organisations import seed_organisation

SIREN = "213502388"
CLIENT_ID, CLIENT_SECRET = "archive-bench", "archive-bench-secret"
BENCH_S3_PORT = 38333
MB = 1_000_000


def _load(name: str) -> ModuleType:
    """A helper module of archive's tests, by path (the tests folder is not a package)."""
    path = REPO / "services/archive/tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"archive_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _s3() -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="kanol-bench-s3-") as folder:
        env = {"KANOL_S3_PORT": str(BENCH_S3_PORT), "KANOL_S3_DIR": folder}
        _run("bash", str(REPO / "scripts/s3.sh"), "start", env=env)
        try:
            yield {
                "storage": "s3",
                "s3_endpoint_url": f"http://127.0.0.1:{BENCH_S3_PORT}",
                "s3_bucket": f"bench-{uuid.uuid4().hex[:8]}",
                "s3_access_key_id": "kanol",
                "s3_secret_access_key": "kanol-secret",
            }
        finally:
            _run("bash", str(REPO / "scripts/s3.sh"), "stop", env=env)


def _event(server: Any, name: str, size: int, numero: int) -> CloudEvent:
    content = os.urandom(size)
    server.documents[name] = content
    reference = DocumentRef(
        role="acte",
        uri=server.uri(name),
        sha256=hashlib.sha256(content).hexdigest(),
        size=size,
        media_type="application/pdf",
        filename=f"{name}.pdf",
    )
    acte = ActeAcknowledged(
        acte_id=str(uuid.uuid4()),
        siren=SIREN,
        identifiant_acte=f"035-{SIREN}-20240312-B_{numero}-DE",
        numero_interne=f"B_{numero}",
        nature=1,
        matiere="7.1",
        objet=f"Délibération de banc d'essai {numero}",
        date_decision=date(2024, 3, 12),
        date_reception=date(2024, 3, 13),
        acknowledged_at=datetime.now(UTC),
        documents=(reference,),
    )
    return CloudEvent.new(acte, source="actes-pes", subject=acte.acte_id, tenant=SIREN)


async def _archives(runtime: ServiceRuntime) -> int:
    async with runtime.database.session() as session:
        return int((await session.exec(select(func.count()).select_from(Archive))).one())


async def _deposits(app: Any, tokens: TokenFactory, server: Any, count: int, size: int) -> None:
    settings: ArchiveSettings = app.state.runtime.settings
    runtime: ServiceRuntime = app.state.runtime
    events = [_event(server, f"bench-{n}", size, n) for n in range(count)]
    before = await _archives(runtime)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        for event in events:
            await producer.send(
                f"{settings.kafka_topic_prefix}{event.topic}",
                event.kafka_value(),
                key=event.kafka_key(),
                headers=event.kafka_headers(),
            )
        await producer.flush()
    finally:
        await producer.stop()

    # Meanwhile an agent searches: each search waits for its logbook entry, which waits
    # for the deposits' transactions holding the logbook's lock.
    token = tokens.issue(SIREN, "archive:read", client_id="bench-reader")
    transport = httpx.ASGITransport(app=app)
    searches: list[float] = []
    deadline = time.monotonic() + 300
    done = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://archive") as api:
        while done < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            asked = time.perf_counter()
            response = await api.get(
                "/v1/archives", params={"limit": 10}, headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            searches.append(time.perf_counter() - asked)
            done = await _archives(runtime) - before
    seconds = time.perf_counter() - started
    print(
        f"deposits from events: {done}/{count} of {size // 1000} KB in {seconds:.1f} s: "
        f"{done / seconds:.1f} deposits/s, {done * size / MB / seconds:.1f} MB/s"
    )
    print(
        f"  a search meanwhile (logged): p50 {percentile(searches, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(searches, 0.99) * 1000:.0f} ms over {len(searches)}"
    )


async def _transfers(app: Any, tokens: TokenFactory, count: int, size: int) -> None:
    samples = _load("seda_samples")
    token = tokens.issue(SIREN, "archive:write archive:read", client_id="bench-software")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/zip"}
    packages = []
    for number in range(count):
        files = {f"content/registre-{number}.pdf": os.urandom(size)}
        described = samples.description(files, siren=SIREN, message_identifier=f"B-{uuid.uuid4()}")
        packages.append(samples.zip_package(samples.manifest(described), files, compression=0))

    transport = httpx.ASGITransport(app=app)
    accepted = 0
    async with httpx.AsyncClient(
        transport=transport, base_url="http://archive", timeout=300
    ) as api:
        started = time.perf_counter()
        for package in packages:
            response = await api.post("/v1/transfers", content=package, headers=headers)
            if response.status_code != 201:
                print(f"  transfer refused: {response.status_code} {response.text[:300]}")
                continue
            accepted += 1
        seconds = time.perf_counter() - started
    print(
        f"transfers (POST /v1/transfers, ZIP, one {size / MB:.0f} MB file): {accepted}/{count} "
        f"in {seconds:.1f} s: {accepted * size / MB / seconds:.1f} MB/s, "
        f"{accepted / seconds:.2f} transfers/s"
    )


async def _audit(runtime: ServiceRuntime, store: Any) -> None:
    started = time.perf_counter()
    run = await run_audit(runtime.database, store, restart=True)
    seconds = time.perf_counter() - started
    audit_rate = run.bytes_checked / MB / seconds

    # The same number of bytes through SHA-512 alone, then SHA-256 and SHA-512, in memory.
    chunk = os.urandom(1024 * 1024)
    # At least 256 MiB, so that a small audit still gets a steady reading.
    rounds = max(256, run.bytes_checked // len(chunk))
    sha512_rate, both_rate = (_hash_rate(chunk, rounds, kinds) for kinds in (1, 2))
    print(
        f"audit: {run.objects_checked} objects, {run.bytes_checked / MB:.0f} MB in "
        f"{seconds:.1f} s: {audit_rate:.0f} MB/s, {run.failures} failure(s)"
    )
    print(
        f"raw on this machine: SHA-512 {sha512_rate:.0f} MB/s, SHA-256+SHA-512 "
        f"{both_rate:.0f} MB/s; audit / raw SHA-512 = {audit_rate / sha512_rate:.2f}, "
        f"audit / raw SHA-256+SHA-512 = {audit_rate / both_rate:.2f}"
    )


def _hash_rate(chunk: bytes, rounds: int, kinds: int) -> float:
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    started = time.perf_counter()
    for _ in range(rounds):
        sha512.update(chunk)
        if kinds == 2:
            sha256.update(chunk)
    return rounds * len(chunk) / MB / (time.perf_counter() - started)


async def run(
    bootstrap: str,
    database_url: str,
    folder: Path,
    *,
    deposits: int,
    document_kb: int,
    transfers: int,
    transfer_mb: float,
    storage: dict[str, Any],
) -> None:
    server_module = _load("document_server")
    tokens = TokenFactory()
    server = server_module.DocumentServer(tokens, CLIENT_ID, CLIENT_SECRET)
    with server_module.running_document_server(server) as running:
        settings = ArchiveSettings(
            environment="test",
            data_dir=folder,
            database_url=database_url,
            kafka_bootstrap=bootstrap,
            kafka_topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.",
            identity_url=running.url,
            trusted_document_origins=[running.url],
            token_issuer=tokens.issuer,
            token_audience=tokens.audience,
            archive_client_id=CLIENT_ID,
            archive_client_secret=CLIENT_SECRET,
            log_level="WARNING",
            outbox_poll_seconds=0.2,
            logbook_seal_period_seconds=0,
            elimination_sweep_period_seconds=0,
            **storage,
        )
        app = create_app(settings)
        app.state.token_verifier = tokens.verifier()
        store = app.state.object_store
        if isinstance(store, S3ObjectStore):
            await store.ensure_bucket()
        async with app.router.lifespan_context(app):
            runtime: ServiceRuntime = app.state.runtime
            await seed_organisation(runtime.database, SIREN)
            await runtime.wait_assigned()
            print(f"archive on {settings.storage} storage, PostgreSQL, Kafka")
            await _deposits(app, tokens, running, deposits, document_kb * 1000)
            if transfers:
                await _transfers(app, tokens, transfers, int(transfer_mb * MB))
            await _audit(runtime, store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deposits", type=int, default=300)
    parser.add_argument("--document-kb", type=int, default=200)
    parser.add_argument("--transfers", type=int, default=10)
    parser.add_argument("--transfer-mb", type=float, default=20.0)
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    arguments = parser.parse_args()

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="kanol-bench-") as folder:
        database_url = postgres_database("archive")
        with _s3() if arguments.storage == "s3" else _nothing() as storage:
            asyncio.run(
                run(
                    bootstrap,
                    database_url,
                    Path(folder),
                    deposits=arguments.deposits,
                    document_kb=arguments.document_kb,
                    transfers=arguments.transfers,
                    transfer_mb=arguments.transfer_mb,
                    storage=storage,
                )
            )


@contextmanager
def _nothing() -> Iterator[dict[str, Any]]:
    yield {}


if __name__ == "__main__":
    main()
