"""Put an organisation into a service's projection of identity, as if identity had said so.

For tests of a service whose routes ``require_subscription``: seed the organisations its
tokens name before calling them.

    await seed_organisation(app.state.runtime.database, "213502388")  # every service
    await seed_organisation(database, "200023414", services=("archive",))
"""

from __future__ import annotations

from collections.abc import Iterable

from kanol_common.db import Database
from kanol_common.events.identity import (
    EffectiveSubscription,
    OrganisationRegistered,
    SubscriptionsChanged,
)
from kanol_common.organisations import SERVICES, apply_organisation, apply_subscriptions


async def seed_organisation(
    database: Database,
    siren: str,
    *,
    services: Iterable[str] = SERVICES,
    name: str | None = None,
    kind: str = "commune",
    departement: str = "035",
    arrondissement: int | None = None,
    nature_collectivite: str | None = None,
) -> None:
    """Register ``siren`` in the projection, subscribed to ``services`` (all by default)."""
    subscribed = tuple(sorted(set(services)))
    registered = OrganisationRegistered(
        siren=siren,
        name=name or f"Organisation {siren}",
        kind=kind,
        departement=departement,
        arrondissement=arrondissement,
        nature_collectivite=nature_collectivite,
    )
    changed = SubscriptionsChanged(
        siren=siren,
        subscriptions=subscribed,
        effective=tuple(
            EffectiveSubscription(service=service, granted_by=siren) for service in subscribed
        ),
        services=subscribed,
    )
    async with database.session() as session:
        await apply_organisation(session, registered)
        await apply_subscriptions(session, changed)
        await session.commit()
