"""identity running for real: PostgreSQL, Kafka (a topic prefix of its own), its lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from kanol_identity.app import create_app
from kanol_identity.models import OrganisationKind
from kanol_identity.seed import SeedRequest, seed
from kanol_identity.settings import IdentitySettings
from kanol_identity.testing import ADMIN_CLIENT, ADMIN_SECRET, BASE_URL, SYNDICAT_SIREN, Identity


@pytest.fixture(scope="module")
def identity_settings(
    postgres_database: Callable[[str], str], kafka_bootstrap: str
) -> IdentitySettings:
    return IdentitySettings(
        environment="test",
        database_url=postgres_database("identity"),
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=f"test-{uuid.uuid4().hex[:10]}.",
        token_issuer=BASE_URL,
        identity_url=BASE_URL,
        outbox_poll_seconds=0.2,
        # The tests speak plain HTTP to the app; a Secure cookie would never come back.
        session_cookie_secure=False,
    )


@pytest.fixture(scope="module")
async def identity(identity_settings: IdentitySettings) -> AsyncIterator[Identity]:
    app = create_app(identity_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            await seed(
                app.state.runtime.database,
                SeedRequest(
                    siren=SYNDICAT_SIREN,
                    name="Syndicat mixte de test",
                    kind=OrganisationKind.SYNDICAT,
                    departement="035",
                    client_id=ADMIN_CLIENT,
                    client_secret=ADMIN_SECRET,
                    scopes=("identity:admin",),
                ),
            )
            yield Identity(app=app, settings=identity_settings, http=http)
