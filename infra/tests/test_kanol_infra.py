"""Checks the root conftest's infrastructure fixtures with the standard library only."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from urllib.parse import urlsplit


def test_kafka_broker_answers_api_versions(kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.split(",")[0].rsplit(":", 1)
    # ApiVersions v0 (api key 18), correlation id 7, null client id.
    request = struct.pack(">hhih", 18, 0, 7, -1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        size, correlation_id, error_code = struct.unpack(">iih", conn.recv(10))
    assert (correlation_id, error_code) == (7, 0)
    assert size > 6


def test_unique_topic_names(unique_topic: str) -> None:
    assert unique_topic.startswith("test.") and len(unique_topic) == len("test.") + 12


def test_postgres_database_is_fresh_and_usable(
    postgres_database: Callable[[str], str],
) -> None:
    url = postgres_database("Infra-Check")
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+asyncpg"
    assert parts.path.startswith("/test_infra_check_")
    libpq_url = parts._replace(scheme="postgresql").geturl()
    psql = [shutil.which("psql") or "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"]
    sql = "CREATE TABLE t (x int); SELECT current_database(), count(*) FROM t"
    out = subprocess.run(
        [*psql, "-d", libpq_url, "-c", sql], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"{parts.path[1:]}|0"
    assert postgres_database("Infra-Check") != url
