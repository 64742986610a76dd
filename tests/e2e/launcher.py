"""Start the real processes of the thin flow, for the end-to-end tests and the benchmarks.

Each service runs as its own Python process, on its own PostgreSQL (or SQLite) database, a
shared broker and a topic prefix of its own, and writes JSON logs to a file the caller can
read (the end-to-end test follows one trace id through them).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

from kanol_common.testing.processes import wait_ready

DEMO_SIREN = "213502388"
SYNDICAT_SIREN = "253514491"


def acte_form(numero_interne: str, pdf: bytes) -> dict[str, tuple[str | None, str | bytes, str]]:
    """The multipart form of ``POST /v1/actes`` for a délibération decided today."""
    metadata = {
        "numero_interne": numero_interne,
        "nature": 1,
        "matiere": "1.1",
        "objet": "Vote du budget primitif",
        "date_decision": date.today().isoformat(),
    }
    return {
        "metadata": (None, json.dumps(metadata), "application/json"),
        "acte": ("deliberation.pdf", pdf, "application/pdf"),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Launch:
    """How to start one process of the platform, and where it says it is ready."""

    argv: list[str]
    env: dict[str, str]
    ready_url: str


@dataclass
class Platform:
    """Where the running platform listens and how to talk to it."""

    workdir: Path
    identity_url: str
    actes_url: str
    archive_url: str
    prefecture_url: str
    client_id: str
    client_secret: str
    siren: str = DEMO_SIREN
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    launches: dict[str, Launch] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str) -> None:
        """Start one process (again), appending to its log."""
        launch = self.launches[name]
        with self.log_path(name).open("ab") as output:
            self.processes[name] = subprocess.Popen(
                launch.argv, env=launch.env, stdout=output, stderr=subprocess.STDOUT
            )

    def wait_ready(self, name: str) -> None:
        launch = self.launches[name]
        wait_ready(name, launch.ready_url, self.processes[name], self.log_path(name))

    def kill(self, name: str) -> None:
        """SIGKILL: the process gets no chance to finish what it was doing."""
        process = self.processes[name]
        process.kill()
        process.wait()

    def log_lines(self, name: str) -> list[str]:
        return self.log_path(name).read_text(errors="replace").splitlines()

    def wait_organisation_known(self, wait_seconds: float = 30.0) -> None:
        """Wait until actes-pes has consumed identity's events about the demo organisation.

        An empty submission answers 403 unknown-organisation until then, and 422 after.
        """
        headers = {"Authorization": f"Bearer {self.token()}"}
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            response = httpx.post(f"{self.actes_url}/v1/actes", headers=headers, timeout=5)
            if response.status_code != 403:
                return
            time.sleep(0.2)
        raise RuntimeError(f"actes-pes does not know the organisation {self.siren} yet")

    def token(self, scopes: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scopes:
            data["scope"] = scopes
        response = httpx.post(
            f"{self.identity_url}/oauth/token",
            data=data,
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def run_platform(
    workdir: Path,
    *,
    kafka_bootstrap: str,
    database_urls: dict[str, str],
    prefecture_args: tuple[str, ...] = (),
    log_level: str = "INFO",
    settings: Mapping[str, str] | None = None,
) -> Iterator[Platform]:
    """Start the prefecture and Hélios simulators, identity, actes-pes, archive; stop on exit.

    ``database_urls`` maps ``identity``, ``actes-pes`` and ``archive`` to their databases;
    ``settings`` adds ``KANOL_*`` variables to every process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {
        name: free_port() for name in ("identity", "actes-pes", "archive", "prefecture", "helios")
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    archive_secret = secrets.token_urlsafe(16)
    platform = Platform(
        workdir=workdir,
        identity_url=urls["identity"],
        actes_url=urls["actes-pes"],
        archive_url=urls["archive"],
        prefecture_url=urls["prefecture"],
        client_id="e2e-mairie",
        client_secret=secrets.token_urlsafe(16),
    )
    base_env = {
        **os.environ,
        "KANOL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KANOL_KAFKA_TOPIC_PREFIX": f"e2e{secrets.token_hex(4)}.",
        "KANOL_LOG_FORMAT": "json",
        "KANOL_LOG_LEVEL": log_level,
        "KANOL_DATA_DIR": str(workdir / "data"),
        "KANOL_IDENTITY_URL": urls["identity"],
        "KANOL_TOKEN_ISSUER": urls["identity"],
        "KANOL_PREFECTURE_URL": urls["prefecture"],
        "KANOL_HELIOS_URL": urls["helios"],
        "KANOL_PUBLIC_URL": urls["actes-pes"],
        "KANOL_TRUSTED_DOCUMENT_ORIGINS": json.dumps([urls["actes-pes"]]),
        "KANOL_ARCHIVE_CLIENT_ID": "e2e-archive",
        "KANOL_ARCHIVE_CLIENT_SECRET": archive_secret,
        **(settings or {}),
    }

    def env_of(name: str) -> dict[str, str]:
        env = {**base_env, "KANOL_SERVICE_NAME": name}
        if name in database_urls:
            env["KANOL_DATABASE_URL"] = database_urls[name]
        return env

    seeds = (
        (
            SYNDICAT_SIREN,
            "Syndicat e2e",
            "syndicat",
            "e2e-archive",
            archive_secret,
            "documents:read",
        ),
        (
            DEMO_SIREN,
            "Commune e2e",
            "commune",
            platform.client_id,
            platform.client_secret,
            "actes:write actes:read pes:write pes:read archive:read org:admin",
        ),
    )
    for siren, name, kind, client_id, secret, scopes in seeds:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kanol_identity",
                "seed",
                "--siren",
                siren,
                "--name",
                name,
                "--kind",
                kind,
                "--departement",
                "035",
                "--client-id",
                client_id,
                # Joined with "=": a random secret may start with "-", like an option.
                f"--client-secret={secret}",
                "--scopes",
                scopes,
                # The demo organisation is subscribed to every service.
                *(["--services", "all"] if siren == DEMO_SIREN else []),
            ],
            env=env_of("identity"),
            check=True,
            capture_output=True,
        )

    commands = {
        "prefecture": ["-m", "kanol_actes_pes.simulators.prefecture", *prefecture_args],
        "helios": ["-m", "kanol_actes_pes.simulators.helios"],
        "identity": ["-m", "kanol_identity", "serve"],
        "actes-pes": ["-m", "kanol_actes_pes", "serve"],
        "archive": ["-m", "kanol_archive", "serve"],
    }
    try:
        for name, arguments in commands.items():
            path = "/livez" if name in ("prefecture", "helios") else "/readyz"
            platform.launches[name] = Launch(
                argv=[sys.executable, *arguments, "--port", str(ports[name])],
                env=env_of(name),
                ready_url=urls[name] + path,
            )
            platform.start(name)
        for name in commands:
            platform.wait_ready(name)
        platform.wait_organisation_known()
        yield platform
    finally:
        _stop(platform.processes)
