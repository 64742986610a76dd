"""Processes killed in the middle of the flow: nothing is lost and nothing is done twice.

actes-pes and archive are killed with SIGKILL while actes are on their way, so no shutdown
code runs; once restarted, every acte submitted before and after is acknowledged once and
archived once.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from kanol_actes_pes.testing import make_pdf
from tests.e2e.launcher import Platform, acte_form

pytestmark = pytest.mark.e2e

SETTLE_TIMEOUT_SECONDS = 90.0


def _submit(client: httpx.Client, platform: Platform, count: int) -> list[str]:
    pdf = make_pdf(title="Délibération soumise pendant une panne")
    acte_ids = []
    for _ in range(count):
        numero = f"F_{secrets.token_hex(5).upper()}"
        response = client.post(f"{platform.actes_url}/v1/actes", files=acte_form(numero, pdf))
        assert response.status_code == 201, response.text
        acte_ids.append(response.json()["id"])
    return acte_ids


def _archives_of(client: httpx.Client, platform: Platform, acte_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{platform.archive_url}/v1/archives", params={"acte_id": acte_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_killed_services_lose_nothing_and_do_nothing_twice(platform: Platform) -> None:
    with httpx.Client(timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {platform.token()}"

        before = _submit(client, platform, 4)
        platform.kill("actes-pes")
        platform.kill("archive")
        platform.start("actes-pes")
        platform.start("archive")
        platform.wait_ready("actes-pes")
        platform.wait_ready("archive")
        after = _submit(client, platform, 2)

        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        waiting = set(before + after)
        while waiting and time.monotonic() < deadline:
            waiting = {
                acte_id for acte_id in waiting if not _archives_of(client, platform, acte_id)
            }
            time.sleep(0.3)
        assert not waiting, f"not archived after the restarts: {sorted(waiting)}"

        time.sleep(1.0)  # a duplicate deposit, if any, would land now
        for acte_id in before + after:
            assert len(_archives_of(client, platform, acte_id)) == 1
            history = client.get(f"{platform.actes_url}/v1/actes/{acte_id}/history").json()
            states = [change["state"] for change in history["items"]]
            assert states.count("transmitted") == 1, states
            assert states[-1] == "acknowledged", states

        everything = client.get(f"{platform.archive_url}/v1/archives", params={"limit": 100})
        assert len(everything.json()["items"]) == len(before + after)
