"""identity's speed: tokens issued per second, and tokens verified per second in a service.

Starts identity alone (uvicorn, PostgreSQL, a broker of its own) and asks it for tokens by
client credentials from ``--concurrency`` callers for ``--seconds``: once with a client
secret (Argon2id on the first request, then the replica's cache of verified secrets) and
once with private_key_jwt (an ES256 signature check and a jti insert each time). Also
prints what one Argon2id check costs, the price of a client's first token. Then verifies access
tokens as every service does, with kanol_common.auth's JwksVerifier, with and without its
verified-token cache. Prints figures; asserts nothing about them.

    uv run python -m bench.identity --seconds 10 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import ECKey

from bench.infra import kafka, percentile, postgres_database
from kanol_common.auth import JwksVerifier
from kanol_common.db import Database
from kanol_common.testing.processes import wait_ready
from kanol_identity import credentials
from kanol_identity.models import OrganisationKind, Service
from kanol_identity.oauth.clients import CLIENT_ASSERTION_TYPE
from kanol_identity.oauth.testing import add_key_client, client_assertion
from kanol_identity.seed import SeedRequest, seed
from kanol_identity.testing import new_siren
from tests.e2e.launcher import free_port

CLIENT_ID = "bench-client"
CLIENT_SECRET = secrets.token_urlsafe(24)
SCOPES = ("actes:read", "actes:write")


async def _prepare(database_url: str) -> tuple[str, ECKey]:
    """A commune with a secret client and a key client; the key client's id and key."""
    database = Database(database_url)
    try:
        siren = new_siren()
        request = SeedRequest(
            siren=siren,
            name="Commune du banc d'essai",
            kind=OrganisationKind.COMMUNE,
            departement="035",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=SCOPES,
            services=(Service.ACTES,),
        )
        await seed(database, request)
        return await add_key_client(database, siren, SCOPES)
    finally:
        await database.dispose()


async def _hammer(
    name: str, ask: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], args: Any
) -> list[str]:
    """Ask for tokens from ``concurrency`` callers for ``seconds``; print the figures."""
    latencies: list[float] = []
    tokens: list[str] = []
    failures = 0
    deadline = time.monotonic() + args.seconds

    async def caller(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await ask(client)
            latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                tokens.append(response.json()["access_token"])
            else:
                failures += 1

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(caller(client) for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
    print(
        f"  {name}: {len(tokens) / elapsed:.1f} tokens/s "
        f"(p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, {failures} refused)"
    )
    return tokens


async def _argon2_cost(rounds: int = 10) -> None:
    """What a client's first token costs identity: one Argon2id check of its secret."""
    stored = await credentials.hash_secret(CLIENT_SECRET)
    started = time.perf_counter()
    for _ in range(rounds):
        await credentials.secret_matches(stored, CLIENT_SECRET)
    each = (time.perf_counter() - started) / rounds
    print(f"identity: one Argon2id secret check takes {each * 1000:.0f} ms (one at a time)")


async def _verifications(verifier: JwksVerifier, tokens: list[str], *, cached: bool) -> None:
    count = 20_000 if cached else 2_000
    await verifier.verify(tokens[0])  # fetch the JWKS outside the measure
    started = time.perf_counter()
    for index in range(count):
        if not cached:
            verifier._verified.clear()
        await verifier.verify(tokens[index % len(tokens)])
    elapsed = time.perf_counter() - started
    label = "with its verified-token cache" if cached else "without cache (signature each time)"
    print(f"  JwksVerifier {label}: {count / elapsed:,.0f} verifications/s")


async def run(identity_url: str, key_client: tuple[str, ECKey], args: Any) -> None:
    token_url = f"{identity_url}/oauth/token"
    client_id, key = key_client

    async def by_secret(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )

    async def by_key(client: httpx.AsyncClient) -> httpx.Response:
        assertion = client_assertion(key, client_id, token_url)
        return await client.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    await _argon2_cost()
    print(f"identity: client credentials, {args.concurrency} callers for {args.seconds:g} s")
    await _hammer("client_secret_basic (secret verified once, then cached)", by_secret, args)
    tokens = await _hammer("private_key_jwt (ES256 assertion)", by_key, args)

    print(f"verification in a service, {min(len(tokens), 500)} distinct tokens")
    verifier = JwksVerifier(
        f"{identity_url}/.well-known/jwks.json", issuer=identity_url, audience="kanol"
    )
    sample = tokens[:500]
    await _verifications(verifier, sample, cached=True)
    await _verifications(verifier, sample, cached=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="kanol-bench-") as folder:
        database_url = postgres_database("identity")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "KANOL_DATABASE_URL": database_url,
            "KANOL_KAFKA_BOOTSTRAP": bootstrap,
            "KANOL_KAFKA_TOPIC_PREFIX": f"bench{secrets.token_hex(4)}.",
            "KANOL_TOKEN_ISSUER": url,
            "KANOL_IDENTITY_URL": url,
            "KANOL_LOG_LEVEL": "WARNING",
        }
        log = Path(folder) / "identity.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "kanol_identity", "serve", "--port", str(port)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready("identity", f"{url}/readyz", process, log)
            key_client = asyncio.run(_prepare(database_url))
            asyncio.run(run(url, key_client, args))
        finally:
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
