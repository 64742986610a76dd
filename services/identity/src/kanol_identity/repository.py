"""Every query identity makes. Nothing here commits: the request or the command does."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_identity.models import ApiClient, Organisation, SigningKey


class OrganisationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_siren(self, siren: str) -> Organisation | None:
        result = await self.session.exec(select(Organisation).where(Organisation.siren == siren))
        return result.first()

    def add(self, organisation: Organisation) -> None:
        self.session.add(organisation)


class ApiClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_client_id(self, client_id: str) -> ApiClient | None:
        result = await self.session.exec(select(ApiClient).where(ApiClient.client_id == client_id))
        return result.first()

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
