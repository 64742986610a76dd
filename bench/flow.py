"""The thin flow at a fixed rate: submission-to-deposit latency and the rate held.

Starts the real processes (identity, actes-pes, archive, the prefecture simulator answering
at once) on PostgreSQL and a broker of its own, submits actes at ``--rate`` per second for
``--seconds``, then reads each acte's archive and its deposit time. Prints figures; asserts
nothing about them.

    uv run python -m bench.flow --rate 50 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.infra import kafka, percentile, postgres_database
from kanol_actes_pes.testing import make_pdf
from tests.e2e.launcher import Platform, acte_form, run_platform


async def _submit(
    client: httpx.AsyncClient, platform: Platform, index: int, run_id: str, pdf: bytes
) -> tuple[str, float, float] | None:
    sent_at = time.time()
    response = await client.post(
        f"{platform.actes_url}/v1/actes", files=acte_form(f"B{run_id}_{index}", pdf)
    )
    if response.status_code != 201:
        print(f"  submission {index} refused: {response.status_code} {response.text[:200]}")
        return None
    return str(response.json()["id"]), sent_at, time.time() - sent_at


async def _deposit_times(client: httpx.AsyncClient, platform: Platform) -> dict[str, float]:
    """Every archive's acte id and deposit time, read page by page (one request per 100)."""
    deposits: dict[str, float] = {}
    params: dict[str, str | int] = {"limit": 100}
    while True:
        response = await client.get(f"{platform.archive_url}/v1/archives", params=params)
        response.raise_for_status()
        page = response.json()
        for item in page["items"]:
            deposits[item["acte_id"]] = datetime.fromisoformat(item["deposited_at"]).timestamp()
        if not page.get("next_cursor"):
            return deposits
        params["cursor"] = page["next_cursor"]


async def run(platform: Platform, rate: float, seconds: float) -> None:
    pdf = make_pdf()
    run_id = str(int(time.time()) % 100_000)
    count = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        client.headers["Authorization"] = f"Bearer {platform.token()}"

        started = time.perf_counter()
        tasks = []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_submit(client, platform, index, run_id, pdf)))
        results = [result for result in await asyncio.gather(*tasks) if result]
        submit_seconds = time.perf_counter() - started

        # Deposit times come from the archive's own records, read when the run is over, so
        # that watching the flow does not load it.
        pending = {acte_id: sent_at for acte_id, sent_at, _ in results}
        latencies: list[float] = []
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            deposits = await _deposit_times(client, platform)
            for acte_id in [acte_id for acte_id in pending if acte_id in deposits]:
                latencies.append(deposits[acte_id] - pending.pop(acte_id))

    http_latencies = [latency for _, _, latency in results]
    print(f"flow: {count} actes offered at {rate:g}/s for {seconds:g} s")
    print(f"  accepted {len(results)}, archived {len(latencies)}, missing {len(pending)}")
    print(f"  submission rate held: {len(results) / submit_seconds:.1f} actes/s")
    print(
        "  POST /v1/actes latency ms: "
        f"p50 {percentile(http_latencies, 0.5) * 1000:.0f}, "
        f"p99 {percentile(http_latencies, 0.99) * 1000:.0f}"
    )
    print(
        "  submission-to-deposit ms: "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f}, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f}, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f}, "
        f"max {max(latencies, default=float('nan')) * 1000:.0f}"
    )


UNCAPPED = "1000000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="actes per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="kanol-bench-") as folder:
        databases = {
            name: postgres_database(name.replace("-", "_"))
            for name in ("identity", "actes-pes", "archive")
        }
        with run_platform(
            Path(folder),
            kafka_bootstrap=bootstrap,
            database_urls=databases,
            log_level="WARNING",
            # The bench measures the flow, not the prefecture's hourly cap (1000 on both
            # sides by default), beyond which actes wait for the next hour.
            prefecture_args=("--max-per-hour", UNCAPPED),
            settings={"KANOL_PREFECTURE_MAX_PER_HOUR": UNCAPPED},
        ) as platform:
            asyncio.run(run(platform, arguments.rate, arguments.seconds))


if __name__ == "__main__":
    main()
