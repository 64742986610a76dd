"""The Dockerfile and the PostgreSQL init script of docker-compose.yml.

No Docker engine runs where the tests run, so the image is not built here: its file is
checked for what the deployments rely on, and the init script is run for real against
the test PostgreSQL server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.facts import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
INIT_SCRIPT = ROOT / "deploy" / "docker" / "postgres" / "init-databases.sh"


def final_stage() -> str:
    return re.split(r"(?m)^FROM ", DOCKERFILE)[-1]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage()
    users = re.findall(r"(?m)^USER\s+(\S+)", stage)
    assert users, "the runtime stage sets a USER"
    uid_arg = re.search(r"(?m)^ARG UID=(\d+)", stage)
    assert uid_arg and int(uid_arg.group(1)) >= 1000
    # Numeric, so that Kubernetes' runAsNonRoot can check it.
    assert users[-1] in {"${UID}:${UID}", uid_arg.group(1)}
    assert (
        "runAsUser: " + uid_arg.group(1)
        in (ROOT / "deploy" / "k8s" / "base" / "identity" / "deployment.yaml").read_text()
    )


def test_every_workspace_member_is_installed_from_the_lock() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        path.parent.relative_to(ROOT)
        for pattern in root["tool"]["uv"]["workspace"]["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    ]
    assert members
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/" in DOCKERFILE, member
    assert "uv sync --frozen --no-dev --all-packages" in DOCKERFILE
    # Editable install at /app: the services find their migrations beside their sources.
    assert "--no-editable" not in DOCKERFILE
    assert "COPY --from=build /app /app" in final_stage()


def test_the_runtime_writes_only_to_data_and_tmp() -> None:
    stage = final_stage()
    assert "KANOL_DATA_DIR=/data" in stage
    assert "PYTHONDONTWRITEBYTECODE=1" in stage
    assert "UV_COMPILE_BYTECODE=1" in DOCKERFILE
    assert 'VOLUME ["/data"]' in stage


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", DOCKERFILE)
    for sources in copied:
        for source in sources.split():
            top = source.split("/")[0]
            assert top not in ignored and source not in ignored, source
    assert ".venv" in " ".join(ignored) and ".git" in ignored


@pytest.fixture
def init_roles(postgres_admin_url: str) -> Iterator[tuple[str, list[str]]]:
    """Two fresh role names, dropped with their databases afterwards."""
    names = [f"init_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield postgres_admin_url, names
    psql = _psql()
    admin = _libpq(postgres_admin_url)
    for name in names:
        subprocess.run(
            [psql, "-X", "-q", "-d", admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
        )
        subprocess.run(
            [psql, "-X", "-q", "-d", admin, "-c", f'DROP ROLE IF EXISTS "{name}"'], check=False
        )


def _psql() -> str:
    found = shutil.which("psql") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None
    )
    assert found, "psql is installed with PostgreSQL (scripts/postgres.sh install)"
    return found


def _libpq(
    url: str, *, user: str | None = None, password: str | None = None, database: str = "postgres"
) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(
        scheme="postgresql", netloc=netloc, path=f"/{database}", query=""
    ).geturl()


def test_the_init_script_makes_one_role_and_one_database_per_service(
    init_roles: tuple[str, list[str]],
) -> None:
    admin_url, names = init_roles
    admin = urlsplit(admin_url)
    psql_dir = str(Path(_psql()).parent)
    environment = {
        **os.environ,
        "PATH": f"{psql_dir}:{os.environ['PATH']}",
        "PGHOST": admin.hostname or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        "PGPASSWORD": admin.password or "",
        "POSTGRES_USER": admin.username or "postgres",
        "POSTGRES_DB": "postgres",
        "KANOL_DATABASES": " ".join(f"{name}:pw-{name}" for name in names),
    }
    subprocess.run(["bash", str(INIT_SCRIPT)], env=environment, check=True, capture_output=True)

    psql = _psql()
    first, second = names
    # Each role logs in with its password and owns its database...
    owner = subprocess.run(
        [
            psql,
            "-X",
            "-At",
            "-d",
            _libpq(admin_url, user=first, password=f"pw-{first}", database=first),
            "-c",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert owner.stdout.strip() == first
    # ...and cannot connect to another service's.
    refused = subprocess.run(
        [
            psql,
            "-X",
            "-At",
            "-d",
            _libpq(admin_url, user=first, password=f"pw-{first}", database=second),
            "-c",
            "SELECT 1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "permission denied" in refused.stderr
