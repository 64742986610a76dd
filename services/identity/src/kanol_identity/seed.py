"""Declare an organisation, its subscriptions and optionally one API client; safe to rerun.

A second run with the same arguments changes nothing. A client that exists with other
scopes or another secret is brought to what the command says, and so are the
organisation's own subscriptions when ``services`` is given, so a deployment script can
keep them in step; an organisation that exists is otherwise left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_identity import credentials, service
from kanol_identity.models import (
    ApiClientCreate,
    OrganisationCreate,
    OrganisationKind,
    Service,
)
from kanol_identity.repository import ApiClientRepository, OrganisationRepository

log = get_logger(__name__)


class SeedConflict(Exception):
    """The seed asks for something that contradicts what exists (a client of another SIREN)."""


@dataclass(frozen=True)
class SeedRequest:
    siren: str
    name: str
    kind: OrganisationKind
    departement: str
    client_id: str | None = None
    client_secret: str | None = None
    scopes: tuple[str, ...] = ()
    # The organisation's own subscriptions; None leaves them as they are.
    services: tuple[Service, ...] | None = None
    parent_siren: str | None = None
    # The ACTES envelope's codes (IDCL); None leaves the platform's defaults.
    arrondissement: int | None = None
    nature_collectivite: str | None = None


@dataclass
class SeedOutcome:
    organisation_created: bool = False
    subscriptions_changed: bool = False
    client_created: bool = False
    client_updated: bool = False
    # Set only when the command generated the secret: the one time it can be shown.
    generated_secret: str | None = None

    @property
    def changed(self) -> bool:
        return (
            self.organisation_created
            or self.subscriptions_changed
            or self.client_created
            or self.client_updated
        )


async def seed(database: Database, request: SeedRequest) -> SeedOutcome:
    outcome = SeedOutcome()
    async with database.session() as session:
        await _seed_organisation(session, request, outcome)
        if request.services is not None:
            outcome.subscriptions_changed = await service.set_subscriptions(
                session, request.siren, request.services
            )
        if request.client_id:
            await _seed_client(session, request, request.client_id, outcome)
        await session.commit()
    return outcome


async def _seed_organisation(
    session: AsyncSession, request: SeedRequest, outcome: SeedOutcome
) -> None:
    existing = await OrganisationRepository(session).get_by_siren(request.siren)
    if existing is not None:
        if (existing.name, existing.kind, existing.departement) != (
            request.name,
            request.kind.value,
            request.departement,
        ):
            log.warning("seed.organisation_differs", tenant=request.siren, kept=existing.name)
        return

    data = OrganisationCreate(
        siren=request.siren,
        name=request.name,
        kind=request.kind,
        departement=request.departement,
        parent_siren=request.parent_siren,
        arrondissement=request.arrondissement,
        nature_collectivite=request.nature_collectivite,
    )
    await service.register_organisation(session, data)
    outcome.organisation_created = True


async def _seed_client(
    session: AsyncSession, request: SeedRequest, client_id: str, outcome: SeedOutcome
) -> None:
    data = ApiClientCreate(client_id=client_id, scopes=list(request.scopes))
    client = await ApiClientRepository(session).get_by_client_id(client_id)
    if client is None:
        secret = request.client_secret or credentials.new_client_secret()
        await service.register_api_client(session, request.siren, data, client_secret=secret)
        outcome.client_created = True
        if request.client_secret is None:
            outcome.generated_secret = secret
        return

    if client.siren != request.siren:
        raise SeedConflict(f"The client {client_id} belongs to the SIREN {client.siren}.")
    if sorted(client.scopes) != data.scopes:
        await service.check_scopes(session, request.siren, data.scopes, operator=True)
        client.scopes = list(data.scopes)
        outcome.client_updated = True
    wanted_secret = request.client_secret
    if wanted_secret and not (
        client.secret_hash and await credentials.secret_matches(client.secret_hash, wanted_secret)
    ):
        client.secret_hash = await credentials.hash_secret(wanted_secret)
        outcome.client_updated = True
    if outcome.client_updated:
        session.add(client)
        log.info("seed.api_client_updated", tenant=client.siren, client_id=client_id)
