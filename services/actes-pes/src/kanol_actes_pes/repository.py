"""Every query of actes-pes. Nothing here commits: the request or the background task does."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, update
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


async def numero_interne_taken(
    session: AsyncSession, siren: str, annee: int, numero_interne: str
) -> bool:
    query = select(func.count()).where(
        Acte.siren == siren,
        Acte.annee_decision == annee,
        Acte.numero_interne == numero_interne,
    )
    return bool((await session.exec(query)).one())


def add(session: AsyncSession, *rows: Acte | ActeDocument | ActeStateChange) -> None:
    session.add_all(rows)


async def documents_of(session: AsyncSession, acte_id: uuid.UUID) -> Sequence[ActeDocument]:
    query = (
        select(ActeDocument)
        .where(ActeDocument.acte_id == acte_id)
        .order_by(col(ActeDocument.created_at), col(ActeDocument.role))
    )
    return (await session.exec(query)).all()


async def document_of(session: AsyncSession, acte_id: uuid.UUID, role: str) -> ActeDocument | None:
    query = select(ActeDocument).where(ActeDocument.acte_id == acte_id, ActeDocument.role == role)
    return (await session.exec(query)).first()


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
    statement = (
        update(Acte)
        .where(col(Acte.id) == acte_id, col(Acte.state) == expected.value)
        .values(state=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    result = await session.exec(statement)
    return int(getattr(result, "rowcount", 0) or 0) == 1


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
    """The acte a return message is about: by the gateway's transmission id, else its id."""
    if prefecture_transmission_id:
        query = select(Acte).where(Acte.prefecture_transmission_id == prefecture_transmission_id)
        found = (await session.exec(query)).first()
        if found is not None:
            return found
    if identifiant_acte:
        query = select(Acte).where(Acte.identifiant_acte == identifiant_acte)
        return (await session.exec(query)).first()
    return None


async def read_cursor(session: AsyncSession, name: str) -> str | None:
    row = await session.get(PrefectureCursor, name)
    return row.cursor if row else None


async def save_cursor(session: AsyncSession, name: str, cursor: str, now: datetime) -> None:
    row = await session.get(PrefectureCursor, name)
    if row is None:
        session.add(PrefectureCursor(name=name, cursor=cursor, updated_at=now))
        return
    row.cursor = cursor
    row.updated_at = now
    session.add(row)
