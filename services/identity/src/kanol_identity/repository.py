"""Every query identity makes. Nothing here commits: the request or the command does."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_identity.models import Agent, ApiClient, Organisation, SigningKey, Subscription


class OrganisationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_siren(self, siren: str) -> Organisation | None:
        result = await self.session.exec(select(Organisation).where(Organisation.siren == siren))
        return result.first()

    async def get_many(self, sirens: Iterable[str]) -> dict[str, Organisation]:
        wanted = sorted(set(sirens))
        if not wanted:
            return {}
        result = await self.session.exec(
            select(Organisation).where(col(Organisation.siren).in_(wanted))
        )
        return {organisation.siren: organisation for organisation in result.all()}

    async def children(self, siren: str) -> list[Organisation]:
        result = await self.session.exec(
            select(Organisation)
            .where(Organisation.parent_siren == siren)
            .order_by(col(Organisation.siren))
        )
        return list(result.all())

    async def page(
        self,
        *,
        after: str | None,
        limit: int,
        kind: str | None = None,
        parent_siren: str | None = None,
        departement: str | None = None,
        only: str | None = None,
    ) -> list[Organisation]:
        """Organisations in SIREN order after ``after`` (keyset pagination)."""
        query = select(Organisation).order_by(col(Organisation.siren)).limit(limit)
        if after is not None:
            query = query.where(Organisation.siren > after)
        if kind is not None:
            query = query.where(Organisation.kind == kind)
        if parent_siren is not None:
            query = query.where(Organisation.parent_siren == parent_siren)
        if departement is not None:
            query = query.where(Organisation.departement == departement)
        if only is not None:
            query = query.where(Organisation.siren == only)
        result = await self.session.exec(query)
        return list(result.all())

    def add(self, organisation: Organisation) -> None:
        self.session.add(organisation)


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def services_of(self, sirens: Iterable[str]) -> dict[str, set[str]]:
        """Each SIREN's own subscribed services (absent SIRENs have none)."""
        wanted = sorted(set(sirens))
        own: dict[str, set[str]] = {siren: set() for siren in wanted}
        if not wanted:
            return own
        result = await self.session.exec(
            select(Subscription).where(col(Subscription.siren).in_(wanted))
        )
        for row in result.all():
            own[row.siren].add(row.service)
        return own

    async def rows_of(self, siren: str) -> list[Subscription]:
        result = await self.session.exec(select(Subscription).where(Subscription.siren == siren))
        return list(result.all())

    def add(self, subscription: Subscription) -> None:
        self.session.add(subscription)

    async def delete(self, subscription: Subscription) -> None:
        await self.session.delete(subscription)


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, agent_id: str) -> Agent | None:
        return await self.session.get(Agent, agent_id)

    async def get_by_login(self, login: str) -> Agent | None:
        result = await self.session.exec(select(Agent).where(Agent.login == login.lower()))
        return result.first()

    async def of_organisation(self, siren: str) -> list[Agent]:
        result = await self.session.exec(
            select(Agent).where(Agent.siren == siren).order_by(col(Agent.login))
        )
        return list(result.all())

    def add(self, agent: Agent) -> None:
        self.session.add(agent)


class ApiClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_client_id(self, client_id: str) -> ApiClient | None:
        result = await self.session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
        return result.first()

    async def of_organisation(self, siren: str) -> list[ApiClient]:
        result = await self.session.exec(
            select(ApiClient).where(ApiClient.siren == siren).order_by(col(ApiClient.client_id))
        )
        return list(result.all())

    def add(self, client: ApiClient) -> None:
        self.session.add(client)


class SigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current(self) -> SigningKey | None:
        """The newest key not retired: the one that signs new tokens."""
        result = await self.session.exec(
            select(SigningKey)
            .where(col(SigningKey.retired_at).is_(None))
            .order_by(col(SigningKey.created_at).desc())
            .limit(1)
        )
        return result.first()

    async def active(self) -> list[SigningKey]:
        result = await self.session.exec(
            select(SigningKey).where(col(SigningKey.retired_at).is_(None))
        )
        return list(result.all())

    async def published(self, retired_after: datetime) -> list[SigningKey]:
        """Keys whose tokens may still be alive: active ones and those retired recently."""
        result = await self.session.exec(
            select(SigningKey)
            .where(
                or_(
                    col(SigningKey.retired_at).is_(None),
                    col(SigningKey.retired_at) > retired_after,
                )
            )
            .order_by(col(SigningKey.created_at).desc())
        )
        return list(result.all())

    def add(self, key: SigningKey) -> None:
        self.session.add(key)
