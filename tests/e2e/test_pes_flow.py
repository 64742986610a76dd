"""A PES V2 flow through the real processes: posted, acknowledged by Hélios, archived.

The flow is the real sample PES_Aller shipped with actes-pes's tests, given the e2e
organisation's SIRET and a fresh file name, and signed again by a throwaway authority.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanol_actes_pes.pes.testing import TestPki, reshape_flow
from kanol_archive.seda.rules import PES_FLOW_KIND
from tests.e2e.launcher import DEMO_SIREN, Platform

pytestmark = pytest.mark.e2e

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "services/actes-pes/tests/data/pes/PESALR2_25060187900027_190328_001.xml"
)
WAIT_SECONDS = 60.0


def _wait_for(what: str, platform: Platform, probe: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    logs = {name: platform.log_lines(name)[-20:] for name in platform.processes}
    pytest.fail(f"{what} not seen in {WAIT_SECONDS} s; logs: {logs}")


def test_a_pes_flow_is_acknowledged_by_helios_and_archived(platform: Platform) -> None:
    number = secrets.randbelow(10**9)
    flow = reshape_flow(
        SAMPLE.read_bytes(),
        nom_fic=f"PESALR2_{DEMO_SIREN}00013_E2E{number}.xml",
        id_coll=f"{DEMO_SIREN}00013",
        pki=TestPki.create(),
        number=number,
    )

    with httpx.Client(timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {platform.token('pes:write pes:read')}"
        posted = client.post(
            f"{platform.actes_url}/v1/pes/flows",
            content=flow,
            headers={"Content-Type": "application/xml"},
        )
        assert posted.status_code == 201, posted.text
        flow_id = posted.json()["id"]

        def acknowledged() -> dict[str, Any] | None:
            found: dict[str, Any] = client.get(
                f"{platform.actes_url}/v1/pes/flows/{flow_id}"
            ).json()
            return found if found["state"] in ("acknowledged", "refused") else None

        final = _wait_for(f"PES flow {flow_id} acknowledged", platform, acknowledged)
        acquit = client.get(f"{platform.actes_url}/v1/pes/flows/{flow_id}/acquit")

        client.headers["Authorization"] = f"Bearer {platform.token()}"

        def archived() -> dict[str, Any] | None:
            page = client.get(
                f"{platform.archive_url}/v1/archives", params={"kind": PES_FLOW_KIND}
            ).json()
            matching = [item for item in page["items"] if item.get("pes_flow_id") == flow_id]
            return matching[0] if matching else None

        summary = _wait_for(f"PES flow {flow_id} archived", platform, archived)
        archive = client.get(f"{platform.archive_url}/v1/archives/{summary['id']}").json()
        manifest = client.get(f"{platform.archive_url}/v1/archives/{summary['id']}/manifest")

    assert final["state"] == "acknowledged", final
    assert acquit.status_code == 200
    assert b"PES_ACQUIT" in acquit.content
    digests = {obj["sha512"] for obj in archive["objects"]}
    assert hashlib.sha512(flow).hexdigest() in digests
    assert hashlib.sha512(acquit.content).hexdigest() in digests
    assert manifest.status_code == 200
    assert b"ArchiveTransfer" in manifest.content
