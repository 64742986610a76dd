"""Each service's copy of identity's organisations, and the subscription check it allows.

identity publishes on ``identity.events`` every organisation (registered, updated) and,
whenever they change, its effective subscriptions (its own and its EPCI's). A service that
accepts work for organisations keeps a projection of them in its own database, table
``kanol_organisation``, filled by a consumer of its own group, and refuses the work of an
organisation that is not subscribed to it:

    # app.py
    build_organisation_consumer(runtime)

    # migrations/versions/0002_organisations.py
    def upgrade() -> None:
        create_organisation_tables()

    # a later migration: the ACTES envelope's codes
    def upgrade() -> None:
        add_envelope_columns()

    # and the revoked clients and agents (kanol_common.revocations)
    def upgrade() -> None:
        create_revocation_table()

    # routes.py
    Submitter = Annotated[Caller, Depends(require_subscription("actes", "actes:write"))]

The projection is eventually consistent: an organisation registered or subscribed a moment
ago is refused (403 ``unknown-organisation`` or ``not-subscribed``) until the service has
consumed the event, usually within a second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import Depends
from sqlalchemy import JSON, Column, DateTime, Integer, String
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.auth import Caller, require_scopes
from kanol_common.consumer import EventConsumer, HandlerContext
from kanol_common.errors import Forbidden
from kanol_common.events import identity
from kanol_common.events.identity import (
    OrganisationRegistered,
    OrganisationUpdated,
    SubscriptionsChanged,
)
from kanol_common.logging import get_logger
from kanol_common.revocations import register_revocation_handlers
from kanol_common.runtime import ServiceRuntime, database_session

log = get_logger(__name__)

TABLE = "kanol_organisation"
SERVICES: tuple[str, ...] = ("actes", "pes", "archive", "ged", "ads", "certificates")


class OrganisationProjection(SQLModel, table=True):
    """What a service knows of an organisation, as identity last published it.

    A row can be created by either kind of event (they share a partition, so they arrive
    in order, but a parked event may come back after a later one): the fields the other
    kind carries stay empty until it arrives.
    """

    __tablename__ = TABLE

    siren: str = Field(sa_column=Column(String(9), primary_key=True))
    name: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    kind: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    departement: str | None = Field(default=None, sa_column=Column(String(3), nullable=True))
    parent_siren: str | None = Field(default=None, sa_column=Column(String(9), nullable=True))
    # The ACTES envelope's codes (IDCL), when identity has them; else the service's defaults.
    arrondissement: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    nature_collectivite: str | None = Field(
        default=None, sa_column=Column(String(2), nullable=True)
    )
    services: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # [{"service": "actes", "granted_by": "<siren>"}, ...]: where each service comes from.
    effective: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    @property
    def label(self) -> str:
        return f"{self.name} ({self.siren})" if self.name else self.siren


# -- the subscription check ----------------------------------------------------------------


class NotSubscribed(Forbidden):
    type_slug = "not-subscribed"
    title = "The organisation is not subscribed to this service"


class UnknownOrganisation(Forbidden):
    type_slug = "unknown-organisation"
    title = "The organisation is not known to this service"


async def get_organisation(session: AsyncSession, siren: str) -> OrganisationProjection | None:
    return await session.get(OrganisationProjection, siren)


async def check_subscription(session: AsyncSession, siren: str, service: str) -> None:
    """Raise a 403 problem unless the organisation may use ``service``."""
    organisation = await get_organisation(session, siren)
    if organisation is None or organisation.name is None:
        raise UnknownOrganisation(
            f"The organisation {siren} is not registered on the platform, or was registered "
            "a moment ago and is not known to this service yet.",
            siren=siren,
            service=service,
        )
    if service not in organisation.services:
        raise NotSubscribed(
            f"The organisation {organisation.label} is not subscribed to the service {service}.",
            siren=siren,
            service=service,
        )


def require_subscription(service: str, *scopes: str) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the caller (holding ``scopes``) of a subscribed organisation.

    ``caller: Annotated[Caller, Depends(require_subscription("actes", "actes:write"))]``
    answers 401/403 as ``require_scopes`` does, then 403 ``unknown-organisation`` or
    ``not-subscribed`` naming the organisation and the service.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    scoped = require_scopes(*scopes)

    # Plain defaults, not Annotated: the annotations of this module are strings, and FastAPI
    # could not resolve the local ``scoped`` from one.
    async def subscribed_caller(
        caller: Caller = Depends(scoped),  # noqa: B008
        session: AsyncSession = Depends(database_session),  # noqa: B008
    ) -> Caller:
        await check_subscription(session, caller.siren, service)
        return caller

    return subscribed_caller


# -- the projection ------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def _row(session: AsyncSession, siren: str) -> OrganisationProjection:
    row = await session.get(OrganisationProjection, siren)
    if row is None:
        row = OrganisationProjection(siren=siren, updated_at=_now())
        session.add(row)
    return row


async def apply_organisation(
    session: AsyncSession, event: OrganisationRegistered | OrganisationUpdated
) -> None:
    row = await _row(session, event.siren)
    row.name = event.name
    row.kind = event.kind
    row.departement = event.departement
    row.parent_siren = event.parent_siren
    row.arrondissement = event.arrondissement
    row.nature_collectivite = event.nature_collectivite
    row.updated_at = _now()
    session.add(row)


async def apply_subscriptions(session: AsyncSession, event: SubscriptionsChanged) -> None:
    row = await _row(session, event.siren)
    row.services = sorted(event.services)
    row.effective = [
        {"service": item.service, "granted_by": item.granted_by} for item in event.effective
    ]
    row.updated_at = _now()
    session.add(row)


def register_organisation_handlers(consumer: EventConsumer) -> EventConsumer:
    """Add the projection's handlers to a consumer of ``identity.events``."""

    @consumer.on(OrganisationRegistered)
    async def on_registered(event: OrganisationRegistered, ctx: HandlerContext) -> None:
        await apply_organisation(ctx.session, event)
        log.info("organisation.projected", tenant=event.siren, change="registered")

    @consumer.on(OrganisationUpdated)
    async def on_updated(event: OrganisationUpdated, ctx: HandlerContext) -> None:
        await apply_organisation(ctx.session, event)
        log.info("organisation.projected", tenant=event.siren, change="updated")

    @consumer.on(SubscriptionsChanged)
    async def on_subscriptions(event: SubscriptionsChanged, ctx: HandlerContext) -> None:
        await apply_subscriptions(ctx.session, event)
        log.info(
            "organisation.subscriptions_projected",
            tenant=event.siren,
            services=list(event.services),
        )

    return consumer


def build_organisation_consumer(
    runtime: ServiceRuntime, *, group_id: str | None = None
) -> EventConsumer:
    """A consumer group of its own on ``identity.events``, added to ``runtime``.

    The group defaults to ``<service>.organisations``, so the projection has its own
    offsets, apart from the service's other consumers. It also keeps the revoked clients
    and deactivated agents (:mod:`kanol_common.revocations`).
    """
    group = group_id or f"{runtime.settings.service_name}.organisations"
    consumer = EventConsumer(runtime, group_id=group, topics=[identity.TOPIC])
    register_revocation_handlers(consumer)
    return register_organisation_handlers(consumer)


# -- migrations ----------------------------------------------------------------------------


def create_organisation_tables() -> None:
    """Create the projection's table; call it from a service's own migration.

    These are the table's first columns; :func:`add_envelope_columns` adds the rest of
    :class:`OrganisationProjection`. A migration's effect never changes once released, so
    later columns come with functions of their own.
    """
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        TABLE,
        sa.Column("siren", sa.String(9), primary_key=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("departement", sa.String(3), nullable=True),
        sa.Column("parent_siren", sa.String(9), nullable=True),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("effective", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def add_envelope_columns() -> None:
    """Add the ACTES envelope's codes (arrondissement, nature) to the projection's table."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column(TABLE, sa.Column("arrondissement", sa.Integer(), nullable=True))
    op.add_column(TABLE, sa.Column("nature_collectivite", sa.String(2), nullable=True))


def drop_envelope_columns() -> None:
    from alembic import op

    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("nature_collectivite")
        batch.drop_column("arrondissement")


def drop_organisation_tables() -> None:
    from alembic import op

    op.drop_table(TABLE)
