"""A broker and a PostgreSQL server for the benchmarks, started once per run.

``KANOL_BENCH_KAFKA_BOOTSTRAP`` uses a running cluster instead of starting a broker; the
PostgreSQL cluster is the project's own (scripts/postgres.sh), left running if it was.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_KAFKA_PORT = 29092
BENCH_KAFKA_CONTROLLER_PORT = 29093


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@contextmanager
def kafka() -> Iterator[str]:
    if bootstrap := os.environ.get("KANOL_BENCH_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="kanol-bench-kafka-") as folder:
        env = {
            "KANOL_KAFKA_PORT": str(BENCH_KAFKA_PORT),
            "KANOL_KAFKA_CONTROLLER_PORT": str(BENCH_KAFKA_CONTROLLER_PORT),
            "KANOL_KAFKA_DIR": folder,
        }
        _run("bash", str(REPO / "scripts/kafka.sh"), "start", env=env)
        try:
            yield f"127.0.0.1:{BENCH_KAFKA_PORT}"
        finally:
            _run("bash", str(REPO / "scripts/kafka.sh"), "stop", env=env)


def postgres_database(name: str) -> str:
    """A new database on the project's PostgreSQL cluster (started when needed)."""
    postgres = str(REPO / "scripts/postgres.sh")
    _run("bash", postgres, "start")
    database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    _run("bash", postgres, "createdb", database)
    return _run("bash", postgres, "url", database).strip()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]
