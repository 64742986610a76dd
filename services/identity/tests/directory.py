"""What identity's directory tests share: organisations made through the admin API, an
organisation's admin with a token of its own, and the events waiting in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlmodel import col, select

from kanol_common.delivery_models import OutboxMessage
from kanol_common.envelope import decode
from kanol_common.events.base import EventData
from kanol_identity.testing import Identity, new_siren

PROBLEMS = "https://kanol.fr/problems/"
E = TypeVar("E", bound=EventData)


def organisation_body(siren: str, **changes: Any) -> dict[str, Any]:
    return {
        "siren": siren,
        "name": f"Organisation {siren}",
        "kind": "commune",
        "departement": "035",
        **changes,
    }


async def register(identity: Identity, siren: str | None = None, **changes: Any) -> str:
    """A new organisation registered by an operator; its SIREN."""
    siren = siren or new_siren()
    response = await identity.http.post(
        "/v1/organisations",
        json=organisation_body(siren, **changes),
        headers=await identity.admin_headers(),
    )
    assert response.status_code == 201, response.text
    return siren


async def subscribe(identity: Identity, siren: str, *services: str) -> dict[str, Any]:
    response = await identity.http.put(
        f"/v1/organisations/{siren}/subscriptions",
        json={"services": list(services)},
        headers=await identity.admin_headers(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class OrgAdmin:
    """An organisation subscribed to actes and archive, and a client that administers it."""

    siren: str
    client_id: str
    headers: dict[str, str]


async def org_admin(identity: Identity) -> OrgAdmin:
    siren, client_id, secret = await identity.add_client("org:admin")
    await subscribe(identity, siren, "actes", "archive")
    token = await identity.token(client_id, secret)
    return OrgAdmin(siren, client_id, {"Authorization": f"Bearer {token}"})


async def outbox_events(identity: Identity, event_class: type[E], subject: str) -> list[E]:
    """The events of one type and subject written to the outbox, oldest first."""
    async with identity.app.state.runtime.database.session() as session:
        rows = (
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.key == subject)
                .order_by(col(OutboxMessage.id))
            )
        ).all()
    found: list[E] = []
    for row in rows:
        if row.headers.get("ce_type") != event_class.event_type:
            continue
        data = decode(row.headers, row.payload, event_class).data
        assert isinstance(data, event_class)
        found.append(data)
    return found


async def outbox_size(identity: Identity) -> int:
    async with identity.app.state.runtime.database.session() as session:
        return len((await session.exec(select(OutboxMessage.id))).all())
