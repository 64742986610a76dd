"""The running platform of the end-to-end tests: one per test module, since some kill it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.launcher import Platform, run_platform


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    postgres_database: Callable[[str], str],
) -> Iterator[Platform]:
    module = request.module.__name__.rpartition(".")[2]
    databases = {
        name: postgres_database(f"{module}_{name.replace('-', '_')}")
        for name in ("identity", "actes-pes", "archive")
    }
    workdir = tmp_path_factory.mktemp(module)
    with run_platform(workdir, kafka_bootstrap=kafka_bootstrap, database_urls=databases) as p:
        yield p
