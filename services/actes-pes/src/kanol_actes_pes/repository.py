"""Every query of actes-pes. Nothing here commits: the request or the background task does."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, inspect, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.acte import ActeState
from kanol_actes_pes.models import Acte, ActeDocument, ActeStateChange, PrefectureCursor


async def get_acte(session: AsyncSession, acte_id: uuid.UUID) -> Acte | None:
    return await session.get(Acte, acte_id, populate_existing=True)


async def get_acte_of(session: AsyncSession, acte_id: uuid.UUID, siren: str) -> Acte | None:
    """The acte if it belongs to the organisation ``siren``; another's is as good as absent."""
    acte = await get_acte(session, acte_id)
    if acte is None or acte.siren != siren:
        return None
    return acte


def add(session: AsyncSession, *rows: Acte | ActeDocument | ActeStateChange) -> None:
    session.add_all(rows)


async def documents_of(session: AsyncSession, acte_id: uuid.UUID) -> Sequence[ActeDocument]:
    query = (
        select(ActeDocument)
        .where(ActeDocument.acte_id == acte_id)
        .order_by(col(ActeDocument.created_at), col(ActeDocument.role))
    )
    return (await session.exec(query)).all()


async def document_of(
    session: AsyncSession, acte_id: uuid.UUID, role: str
) -> tuple[str, ActeDocument | None] | None:
    """The SIREN of the acte's organisation and its document ``role``; ``None``: no acte.

    One query for both, so that serving a document costs one round trip.
    """
    same_document = (col(ActeDocument.acte_id) == col(Acte.id)) & (col(ActeDocument.role) == role)
    query = (
        select(Acte.siren, ActeDocument)
        .select_from(Acte)
        .outerjoin(ActeDocument, same_document)
        .where(Acte.id == acte_id)
    )
    row = (await session.exec(query)).first()
    return None if row is None else (row[0], row[1])


async def delete_documents(session: AsyncSession, acte_id: uuid.UUID, roles: Iterable[str]) -> None:
    statement = delete(ActeDocument).where(
        col(ActeDocument.acte_id) == acte_id, col(ActeDocument.role).in_(list(roles))
    )
    await session.exec(statement)


async def history_of(session: AsyncSession, acte_id: uuid.UUID) -> Sequence[ActeStateChange]:
    query = (
        select(ActeStateChange)
        .where(ActeStateChange.acte_id == acte_id)
        .order_by(col(ActeStateChange.id))
    )
    return (await session.exec(query)).all()


async def compare_and_set_state(
    session: AsyncSession,
    acte_id: uuid.UUID,
    expected: ActeState,
    target: ActeState,
    values: dict[str, Any],
) -> bool:
    """Move the acte from ``expected`` to ``target`` unless someone moved it first.

    One UPDATE guarded by the current state: of two processes racing for the same acte,
    exactly one sees a row updated.
    """
    # On the table, not the mapped class: the ORM's bulk-update path would only add work
    # to a statement that never synchronises the session anyway.
    table = _acte_table()
    statement = (
        update(table)
        .where(table.c.id == acte_id, table.c.state == expected.value)
        .values(state=target.value, **values)
    )
    result = await session.exec(statement)
    return int(getattr(result, "rowcount", 0) or 0) == 1


@functools.cache
def _acte_table() -> Table:
    table = inspect(Acte).local_table
    assert isinstance(table, Table)
    return table


async def waiting_for_transmission(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[uuid.UUID]:
    """Actes waiting to be sent whose time has come, oldest first."""
    due = col(Acte.next_attempt_at).is_(None) | (col(Acte.next_attempt_at) <= now)
    query = (
        select(Acte.id)
        .where(Acte.state == ActeState.WAITING_FOR_TRANSMISSION.value, due)
        .order_by(col(Acte.created_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def failed_due_for_retry(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[uuid.UUID]:
    query = (
        select(Acte.id)
        .where(
            Acte.state == ActeState.TRANSMISSION_FAILED.value,
            col(Acte.next_attempt_at).is_not(None),
            col(Acte.next_attempt_at) <= now,
        )
        .order_by(col(Acte.next_attempt_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def transmitting_since(
    session: AsyncSession, before: datetime | None, limit: int
) -> Sequence[uuid.UUID]:
    """Actes left in ``transmitting`` (all of them, or those untouched since ``before``)."""
    query = select(Acte.id).where(Acte.state == ActeState.TRANSMITTING.value)
    if before is not None:
        query = query.where(col(Acte.updated_at) < before)
    return (await session.exec(query.order_by(col(Acte.updated_at)).limit(limit))).all()


async def transmitting_due(
    session: AsyncSession, now: datetime, lease_cutoff: datetime, limit: int
) -> Sequence[uuid.UUID]:
    """Actes ``transmitting`` to settle: a send postponed until now, or one left too long."""
    postponed = col(Acte.next_attempt_at).is_not(None) & (col(Acte.next_attempt_at) <= now)
    abandoned = col(Acte.next_attempt_at).is_(None) & (col(Acte.updated_at) < lease_cutoff)
    query = (
        select(Acte.id)
        .where(Acte.state == ActeState.TRANSMITTING.value, postponed | abandoned)
        .order_by(col(Acte.updated_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def postpone_transmitting(
    session: AsyncSession, acte_id: uuid.UUID, error: str, retry_at: datetime, now: datetime
) -> None:
    """Note a failed attempt on an acte that stays ``transmitting`` (no state change)."""
    statement = (
        update(Acte)
        .where(col(Acte.id) == acte_id, col(Acte.state) == ActeState.TRANSMITTING.value)
        .values(
            last_error=error,
            next_attempt_at=retry_at,
            updated_at=now,
            transmission_attempts=col(Acte.transmission_attempts) + 1,
        )
        .execution_options(synchronize_session=False)
    )
    await session.exec(statement)


async def acte_for_return_message(
    session: AsyncSession, prefecture_transmission_id: str | None, identifiant_acte: str | None
) -> Acte | None:
    """The acte a return message is about: by the gateway's transmission id, else its id.

    Locked until the caller commits (on PostgreSQL), so that the transmitter recording the
    same acte waits for the reply instead of moving it under the reply's feet.
    """
    if prefecture_transmission_id:
        query = select(Acte).where(Acte.prefecture_transmission_id == prefecture_transmission_id)
        found = (await session.exec(query.with_for_update())).first()
        if found is not None:
            return found
    if identifiant_acte:
        query = select(Acte).where(Acte.identifiant_acte == identifiant_acte)
        return (await session.exec(query.with_for_update())).first()
    return None


async def read_cursor(session: AsyncSession, name: str) -> str | None:
    row = await session.get(PrefectureCursor, name)
    return row.cursor if row else None


async def save_cursor(session: AsyncSession, name: str, cursor: str, now: datetime) -> None:
    # One upsert rather than a read then a write: the receiver saves it after every reply.
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(PrefectureCursor)
        .values(name=name, cursor=cursor, updated_at=now)
        .on_conflict_do_update(
            index_elements=[col(PrefectureCursor.name)],
            set_={"cursor": cursor, "updated_at": now},
        )
    )
    await session.exec(statement)
