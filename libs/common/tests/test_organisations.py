"""The projection of identity's organisations, filled through a real broker, and the check
that refuses an organisation not subscribed to a service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from kanol_common import outbox
from kanol_common.db import Database
from kanol_common.events.identity import (
    EffectiveSubscription,
    OrganisationRegistered,
    OrganisationUpdated,
    SubscriptionsChanged,
)
from kanol_common.organisations import (
    NotSubscribed,
    OrganisationProjection,
    UnknownOrganisation,
    add_envelope_columns,
    build_organisation_consumer,
    check_subscription,
    create_organisation_tables,
    drop_envelope_columns,
    drop_organisation_tables,
    require_subscription,
)
from kanol_common.runtime import ServiceRuntime
from kanol_common.testing.delivery import create_delivery_schema, delivery_settings, wait_until
from kanol_common.testing.organisations import seed_organisation

EPCI = "243500139"
COMMUNE = "213502388"


@pytest.fixture
async def database(postgres_database: Callable[[str], str]) -> AsyncIterator[Database]:
    db = Database(postgres_database("organisations"))
    await create_delivery_schema(db)

    def create(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            create_organisation_tables()
            add_envelope_columns()

    async with db.engine.begin() as connection:
        await connection.run_sync(create)
    yield db
    await db.dispose()


def _subscriptions(siren: str, *granted: tuple[str, str]) -> SubscriptionsChanged:
    return SubscriptionsChanged(
        siren=siren,
        subscriptions=tuple(service for service, by in granted if by == siren),
        effective=tuple(EffectiveSubscription(service=s, granted_by=by) for s, by in granted),
        services=tuple(sorted(service for service, _ in granted)),
    )


async def _projection(database: Database, siren: str) -> OrganisationProjection | None:
    async with database.session() as session:
        return await session.get(OrganisationProjection, siren)


async def test_consumer_fills_the_projection_from_identity_events(
    database: Database, kafka_bootstrap: str
) -> None:
    settings = delivery_settings(kafka_bootstrap, database.url, service_name="archive")
    runtime = ServiceRuntime(settings, database=database)
    consumer = build_organisation_consumer(runtime)
    assert consumer.group_id == "archive.organisations"

    async with runtime.running():
        await runtime.wait_assigned()
        async with database.session() as session:
            for event in (
                OrganisationRegistered(
                    siren=COMMUNE,
                    name="Commune de Rennes",
                    kind="commune",
                    departement="035",
                    parent_siren=EPCI,
                ),
                _subscriptions(COMMUNE, ("actes", EPCI), ("archive", COMMUNE)),
            ):
                outbox.publish(session, event, subject=COMMUNE, tenant=COMMUNE)
            await session.commit()

        async def projected() -> bool:
            row = await _projection(database, COMMUNE)
            return row is not None and row.services == ["actes", "archive"]

        await wait_until(projected, what="the commune in the projection")

        async with database.session() as session:
            moved = OrganisationUpdated(
                siren=COMMUNE,
                name="Ville de Rennes",
                kind="commune",
                departement="035",
                arrondissement=2,
                nature_collectivite="25",
            )
            outbox.publish(session, moved, subject=COMMUNE, tenant=COMMUNE)
            outbox.publish(
                session,
                _subscriptions(COMMUNE, ("archive", COMMUNE)),
                subject=COMMUNE,
                tenant=COMMUNE,
            )
            await session.commit()

        async def moved_out() -> bool:
            row = await _projection(database, COMMUNE)
            return row is not None and row.services == ["archive"]

        await wait_until(moved_out, what="the commune out of its EPCI")

    row = await _projection(database, COMMUNE)
    assert row is not None
    assert (row.name, row.kind, row.departement, row.parent_siren) == (
        "Ville de Rennes",
        "commune",
        "035",
        None,
    )
    assert (row.arrondissement, row.nature_collectivite) == (2, "25")
    assert row.effective == [{"service": "archive", "granted_by": COMMUNE}]


class TestCheckSubscription:
    async def test_subscribed_passes(self, database: Database) -> None:
        await seed_organisation(database, COMMUNE, services=("actes",))

        async with database.session() as session:
            await check_subscription(session, COMMUNE, "actes")

    async def test_not_subscribed_names_the_organisation_and_the_service(
        self, database: Database
    ) -> None:
        await seed_organisation(database, COMMUNE, services=("actes",), name="Commune de Démo")

        async with database.session() as session:
            with pytest.raises(NotSubscribed) as refused:
                await check_subscription(session, COMMUNE, "archive")

        assert refused.value.status == 403
        assert refused.value.type_slug == "not-subscribed"
        assert "Commune de Démo (213502388)" in refused.value.detail
        assert "archive" in refused.value.detail
        assert refused.value.extensions == {"siren": COMMUNE, "service": "archive"}

    async def test_unknown_organisation_is_refused(self, database: Database) -> None:
        async with database.session() as session:
            with pytest.raises(UnknownOrganisation) as refused:
                await check_subscription(session, COMMUNE, "actes")

        assert refused.value.type_slug == "unknown-organisation"
        assert COMMUNE in refused.value.detail


def test_an_unknown_service_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        require_subscription("acts", "actes:write")


async def test_migration_helpers_drop_what_they_create(database: Database) -> None:
    def drop(connection: Connection) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            drop_envelope_columns()
            drop_organisation_tables()

    async with database.engine.begin() as connection:
        await connection.run_sync(drop)

    with pytest.raises(Exception, match="kanol_organisation"):
        await _projection(database, COMMUNE)
