"""`make demo`: submit a sample acte through the running platform and follow it to the archive.

It reads the demo client's credentials from the file `make up` wrote, asks identity for a
token, posts a délibération with a generated PDF, then polls actes-pes and archive until
the acte is deposited, and prints its states and the time from submission to deposit.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import httpx

from kanol_actes_pes.testing import make_pdf

ENV_FILE = Path(".run/platform/platform.env")
IDENTITY = "http://127.0.0.1:8001"
ACTES = "http://127.0.0.1:8002"
ARCHIVE = "http://127.0.0.1:8003"
TIMEOUT_SECONDS = 60.0


def read_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        sys.exit("demo: the platform is not set up; run `make up` first.")
    lines = ENV_FILE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def token(client: httpx.Client, env: dict[str, str]) -> str:
    response = client.post(
        f"{IDENTITY}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(env["KANOL_DEMO_CLIENT_ID"], env["KANOL_DEMO_CLIENT_SECRET"]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def submit(client: httpx.Client) -> dict[str, object]:
    numero = f"DEMO_{int(time.time()) % 10**9}"
    metadata = {
        "numero_interne": numero,
        "nature": 1,
        "matiere": "1.1",
        "objet": "Approbation du règlement intérieur du conseil municipal",
        "date_decision": date.today().isoformat(),
    }
    files: dict[str, tuple[str | None, str | bytes, str]] = {
        "metadata": (None, json.dumps(metadata), "application/json"),
        "acte": (
            "deliberation.pdf",
            make_pdf(title="Délibération de démonstration"),
            "application/pdf",
        ),
    }
    response = client.post(f"{ACTES}/v1/actes", files=files)
    deadline = time.monotonic() + 15
    # actes-pes learns of the demo organisation from identity's events a moment after start.
    while _unknown_organisation(response) and time.monotonic() < deadline:
        time.sleep(0.5)
        response = client.post(f"{ACTES}/v1/actes", files=files)
    if response.status_code != 201:
        sys.exit(f"demo: submission refused: {response.status_code} {response.text}")
    body: dict[str, object] = response.json()
    return body


def _unknown_organisation(response: httpx.Response) -> bool:
    if response.status_code != 403:
        return False
    problem_type = str(response.json().get("type", ""))
    return problem_type.endswith("/unknown-organisation")


def wait_for_archive(client: httpx.Client, acte_id: str, started: float) -> dict[str, object]:
    while time.perf_counter() - started < TIMEOUT_SECONDS:
        response = client.get(f"{ARCHIVE}/v1/archives", params={"acte_id": acte_id})
        response.raise_for_status()
        items = response.json()["items"]
        if items:
            archive: dict[str, object] = items[0]
            return archive
        time.sleep(0.05)
    sys.exit(f"demo: acte {acte_id} was not archived within {TIMEOUT_SECONDS:.0f} s")


def main() -> None:
    env = read_env()
    with httpx.Client(timeout=10.0) as client:
        client.headers["Authorization"] = f"Bearer {token(client, env)}"

        started = time.perf_counter()
        acte = submit(client)
        acte_id = str(acte["id"])
        print(f"acte submitted: {acte_id} ({acte['identifiant_acte']})")

        archive = wait_for_archive(client, acte_id, started)
        elapsed_ms = (time.perf_counter() - started) * 1000

        history = client.get(f"{ACTES}/v1/actes/{acte_id}/history").json()
        states = " -> ".join(str(change["state"]) for change in history["items"])
        print(f"states: {states}")
        detail = client.get(f"{ARCHIVE}/v1/archives/{archive['id']}").json()
        print(f"archive: {archive['id']}")
        for item in detail["objects"]:
            print(f"  {item['role']:<22} {item['size']:>7} bytes  sha512 {item['sha512'][:16]}…")
        print(f"submission to deposit: {elapsed_ms:.0f} ms")


if __name__ == "__main__":
    main()
