"""The queries of deposits and transfers: one archive per source, found by its natural key."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive.models import Archive


def acte_key(acte_id: str) -> str:
    return f"acte:{acte_id}"


def pes_flow_key(flow_id: str) -> str:
    return f"pes_flow:{flow_id}"


def transfer_key(siren: str, message_identifier: str) -> str:
    return f"transfer:{siren}:{message_identifier}"


class DepositRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_by_source_key(self, source_key: str) -> Archive | None:
        result = await self.session.exec(select(Archive).where(Archive.source_key == source_key))
        return result.first()

    async def add_if_new(self, archive: Archive) -> bool:
        """Insert the archive unless one exists for the same event or the same source.

        Both unique keys decide (``source_event_id`` and ``source_key``), so two consumers or
        two requests racing on the same source make one archive, and the loser learns it
        here without an error that would abort its transaction.
        """
        values = archive.model_dump()
        insert = (
            postgresql_insert(Archive)
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite_insert(Archive)
        )
        statement = insert.values(**values).on_conflict_do_nothing().returning(col(Archive.id))
        result = await self.session.exec(statement)
        return result.scalar_one_or_none() is not None
