"""identity's FastAPI app: the OAuth 2.0 endpoints and the admin API, on the shared runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from kanol_common.http import create_app as create_service_app
from kanol_common.runtime import ServiceRuntime
from kanol_identity import housekeeping, login, logout, routes
from kanol_identity.oauth.router import router as oauth_router
from kanol_identity.settings import IdentitySettings
from kanol_identity.signing import LocalKeysVerifier, SigningKeys, ensure_signing_key
from kanol_identity.throttle import Throttle

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or IdentitySettings()
    runtime = ServiceRuntime(settings, MIGRATIONS_DIR)
    signing_keys = SigningKeys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            await ensure_signing_key(runtime.database, settings)
            chores = asyncio.create_task(housekeeping.run_forever(runtime.database, settings))
            try:
                yield
            finally:
                chores.cancel()
                await asyncio.gather(chores, return_exceptions=True)

    app = create_service_app(
        settings,
        title="Kanol identity",
        description="Organisations, API clients and the OAuth 2.0 authorisation server.",
        routers=[oauth_router, login.router, logout.router, routes.router],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.signing_keys = signing_keys
    app.state.throttle = Throttle(runtime.database, settings)
    # The admin API checks tokens against identity's own keys, without a call to itself.
    app.state.token_verifier = LocalKeysVerifier(runtime.database, signing_keys)
    return app
