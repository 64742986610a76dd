"""Repo-wide pytest fixtures: a Kafka broker and a PostgreSQL server for integration tests.

Each comes from the environment when set, else from scripts/kafka.sh and scripts/postgres.sh:

    KANOL_TEST_KAFKA_BOOTSTRAP=127.0.0.1:9092
    KANOL_TEST_POSTGRES_URL=postgresql+asyncpg://kanol:kanol@127.0.0.1:5433/postgres

Missing infrastructure is an error, never a skip. Standard library only, so that this file
loads in every package's environment. Not pytest-xdist aware: the test broker has fixed ports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kanol_common.storage import S3Location

REPO = Path(__file__).resolve().parent
KAFKA_SH = str(REPO / "scripts" / "kafka.sh")
S3_SH = str(REPO / "scripts" / "s3.sh")
POSTGRES_SH = str(REPO / "scripts" / "postgres.sh")

# Two test sessions on one machine (a developer's and CI's) each set their own ports.
TEST_KAFKA_PORT = int(os.environ.get("KANOL_TEST_KAFKA_PORT", "19092"))
TEST_KAFKA_CONTROLLER_PORT = int(os.environ.get("KANOL_TEST_KAFKA_CONTROLLER_PORT", "19093"))


def _run(*args: str, env: Mapping[str, str] | None = None) -> str:
    """Runs a command and returns its stdout; fails with all its output if it fails."""
    proc = subprocess.run(
        args, env=None if env is None else {**os.environ, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a Kafka cluster; a broker of this session's own if none is given."""
    if bootstrap := os.environ.get("KANOL_TEST_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    env = {
        "KANOL_KAFKA_PORT": str(TEST_KAFKA_PORT),
        "KANOL_KAFKA_CONTROLLER_PORT": str(TEST_KAFKA_CONTROLLER_PORT),
        "KANOL_KAFKA_DIR": str(tmp_path_factory.mktemp("kafka")),
    }
    # A port still taken here is usually a broker left by a killed session: kafka.sh says so.
    _run(KAFKA_SH, "start", env=env)
    try:
        yield f"127.0.0.1:{TEST_KAFKA_PORT}"
    finally:
        _run(KAFKA_SH, "stop", env=env)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """SQLAlchemy asyncpg URL of a superuser on a PostgreSQL server (database: postgres)."""
    if url := os.environ.get("KANOL_TEST_POSTGRES_URL"):
        yield url
        return
    # Reuse a developer's running cluster and leave it running; stop only what we started.
    was_running = subprocess.run([POSTGRES_SH, "status"], capture_output=True).returncode == 0
    _run(POSTGRES_SH, "start")
    try:
        yield _run(POSTGRES_SH, "url", "postgres").strip()
    finally:
        if not was_running:
            _run(POSTGRES_SH, "stop")


def _psql_binary() -> str:
    """psql from PATH, else the newest one shipped with a Debian server package."""
    if found := shutil.which("psql"):
        return found
    shipped = Path("/usr/lib/postgresql").glob("*/bin/psql")
    newest = max(
        shipped, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, default=None
    )
    if newest is None:
        raise RuntimeError("psql not found: run scripts/postgres.sh install")
    return str(newest)


def _admin_sql(admin_url: str, sql: str) -> None:
    """Runs one statement on the server's postgres database through psql."""
    # libpq takes the same URL without the SQLAlchemy driver (or asyncpg's query options).
    libpq_url = urlsplit(admin_url)._replace(scheme="postgresql", path="/postgres", query="")
    _run(_psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq_url.geturl(), "-c", sql)


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: `postgres_database("outbox")` creates a fresh empty database, returns its
    asyncpg URL; every database it made is dropped at the end of the session."""
    created: list[str] = []

    def create(name: str) -> str:
        slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
        database = f"test_{slug}_{uuid.uuid4().hex[:8]}"
        _admin_sql(postgres_admin_url, f'CREATE DATABASE "{database}"')
        created.append(database)
        return urlsplit(postgres_admin_url)._replace(path=f"/{database}").geturl()

    yield create
    for database in created:
        _admin_sql(postgres_admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test uses (brokers here auto-create topics, 3 partitions)."""
    return f"test.{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3_location(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Location]:
    """An S3-compatible endpoint for the session: ``KANOL_TEST_S3_ENDPOINT`` (with
    ``KANOL_TEST_S3_ACCESS_KEY_ID`` and ``KANOL_TEST_S3_SECRET_ACCESS_KEY``) if set, else a
    SeaweedFS started by scripts/s3.sh (built on first use) on ``KANOL_TEST_S3_PORT``.
    Each use takes a bucket of its own: ``replace(s3_location, bucket=...)``."""
    endpoint = os.environ.get("KANOL_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Location(
            endpoint_url=endpoint,
            bucket="kanol-test",
            access_key_id=os.environ.get("KANOL_TEST_S3_ACCESS_KEY_ID", "kanol"),
            secret_access_key=os.environ.get("KANOL_TEST_S3_SECRET_ACCESS_KEY", "kanol-secret"),
        )
        return

    port = os.environ.get("KANOL_TEST_S3_PORT", "18433")
    env = {"KANOL_S3_PORT": port, "KANOL_S3_DIR": str(tmp_path_factory.mktemp("s3"))}
    _run(S3_SH, "start", env=env)
    try:
        yield S3Location(
            endpoint_url=f"http://127.0.0.1:{port}",
            bucket="kanol-test",
            access_key_id="kanol",
            secret_access_key="kanol-secret",  # noqa: S106 - scripts/s3.sh's loopback default
        )
    finally:
        _run(S3_SH, "stop", env=env)
