"""Which services an organisation may use: its own subscriptions and its EPCI's.

An EPCI's subscription covers its communes and their CCAS, and its CIAS: the EPCI is found
by walking up the parents (CCAS -> commune -> EPCI, CIAS -> EPCI, commune -> EPCI). A
commune's own subscription does not cover its CCAS; only an EPCI's propagates.

Whenever the effective subscriptions of any organisation change (its own changed, its
EPCI's changed, or it moved to another EPCI), a ``SubscriptionsChanged`` event carrying the
whole new state is published for it, in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.events.identity import EffectiveSubscription as EffectiveEvent
from kanol_common.events.identity import SubscriptionsChanged
from kanol_common.logging import get_logger
from kanol_common.outbox import publish
from kanol_identity.models import (
    EffectiveSubscription,
    Organisation,
    OrganisationKind,
    Service,
    Subscription,
    utcnow,
)
from kanol_identity.repository import OrganisationRepository, SubscriptionRepository

log = get_logger(__name__)

# CCAS -> commune -> EPCI is the longest chain the parent rules allow.
_MAX_DEPTH = 3

Effective = tuple[EffectiveSubscription, ...]


async def effective_of(session: AsyncSession, sirens: Iterable[str]) -> dict[str, Effective]:
    """Each organisation's effective subscriptions, sorted by service; batched queries."""
    wanted = set(sirens)
    organisations = await OrganisationRepository(session).get_many(wanted)
    epci_of = await _covering_epcis(session, organisations)

    own = await SubscriptionRepository(session).services_of(
        set(organisations) | set(epci_of.values())
    )
    effective: dict[str, Effective] = {}
    for siren in wanted:
        granted = dict.fromkeys(own.get(siren, set()), siren)
        epci = epci_of.get(siren)
        if epci is not None:
            for service in own.get(epci, set()):
                granted.setdefault(service, epci)
        effective[siren] = tuple(
            EffectiveSubscription(service=Service(service), granted_by=by)
            for service, by in sorted(granted.items())
        )
    return effective


async def effective_services(session: AsyncSession, siren: str) -> set[str]:
    """The services an organisation may use now (for token scopes and roles)."""
    effective = (await effective_of(session, [siren]))[siren]
    return {subscription.service.value for subscription in effective}


async def _covering_epcis(
    session: AsyncSession, organisations: dict[str, Organisation]
) -> dict[str, str]:
    """The EPCI above each organisation, if any (an EPCI is not covered by another)."""
    repository = OrganisationRepository(session)
    known = dict(organisations)
    # Where each organisation's walk stands: the SIREN of the next parent to look at.
    cursor = {
        siren: org.parent_siren
        for siren, org in organisations.items()
        if org.kind != OrganisationKind.EPCI and org.parent_siren
    }
    epci_of: dict[str, str] = {}
    for _ in range(_MAX_DEPTH):
        if not cursor:
            break
        known.update(await repository.get_many(set(cursor.values()) - set(known)))
        next_cursor: dict[str, str] = {}
        for siren, parent_siren in cursor.items():
            parent = known.get(parent_siren)
            if parent is None:
                continue
            if parent.kind == OrganisationKind.EPCI:
                epci_of[siren] = parent.siren
            elif parent.parent_siren:
                next_cursor[siren] = parent.parent_siren
        cursor = next_cursor
    return epci_of


async def covered_by(session: AsyncSession, siren: str) -> list[str]:
    """The organisation and every one whose effective subscriptions may follow its own.

    Its children and grandchildren: an EPCI's communes and CIAS, the communes' CCAS.
    """
    repository = OrganisationRepository(session)
    found = [siren]
    frontier = [siren]
    for _ in range(_MAX_DEPTH - 1):
        children = [
            child.siren for parent in frontier for child in await repository.children(parent)
        ]
        if not children:
            break
        found.extend(children)
        frontier = children
    return found


def publish_changes(
    session: AsyncSession, before: dict[str, Effective], after: dict[str, Effective]
) -> list[str]:
    """Publish ``SubscriptionsChanged`` for every organisation whose effective set moved."""
    changed = sorted(siren for siren in after if after[siren] != before.get(siren, ()))
    for siren in changed:
        own = tuple(sub.service.value for sub in after[siren] if sub.granted_by == siren)
        effective = tuple(
            EffectiveEvent(service=sub.service.value, granted_by=sub.granted_by)
            for sub in after[siren]
        )
        event = SubscriptionsChanged(
            siren=siren,
            subscriptions=own,
            effective=effective,
            services=tuple(sub.service.value for sub in after[siren]),
        )
        publish(session, event, subject=siren, tenant=siren)
        log.info("subscriptions.changed", tenant=siren, services=list(event.services))
    return changed


async def set_own(session: AsyncSession, siren: str, services: Iterable[Service]) -> bool:
    """Bring an organisation's own subscriptions to ``services``; whether anything changed.

    The caller has checked that the organisation exists and publishes the effects with
    :func:`publish_changes` around this call.
    """
    repository = SubscriptionRepository(session)
    rows = {row.service: row for row in await repository.rows_of(siren)}
    wanted = {service.value for service in services}

    for service in sorted(wanted - set(rows)):
        repository.add(Subscription(siren=siren, service=service, subscribed_at=utcnow()))
    for service in sorted(set(rows) - wanted):
        await repository.delete(rows[service])
    changed = wanted != set(rows)
    if changed:
        await session.flush()
    return changed
