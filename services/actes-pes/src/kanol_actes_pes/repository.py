"""Every query of actes-pes. Nothing here commits: the request or the background task does."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, delete, func, inspect, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.acte import ActeState
from kanol_actes_pes.models import (
    Acte,
    ActeDocument,
    ActeMessage,
    ActeStateChange,
    MessageDirection,
    MessageState,
    PrefectureCursor,
    StoredClassification,
)
from kanol_common.pagination import PageCursor, keyset_after


async def get_acte(session: AsyncSession, acte_id: uuid.UUID) -> Acte | None:
    return await session.get(Acte, acte_id, populate_existing=True)


async def get_acte_of(session: AsyncSession, acte_id: uuid.UUID, siren: str) -> Acte | None:
    """The acte if it belongs to the organisation ``siren``; another's is as good as absent."""
    acte = await get_acte(session, acte_id)
    if acte is None or acte.siren != siren:
        return None
    return acte


def add(
    session: AsyncSession,
    *rows: Acte | ActeDocument | ActeStateChange | ActeMessage | StoredClassification,
) -> None:
    session.add_all(rows)


async def documents_of(session: AsyncSession, acte_id: uuid.UUID) -> Sequence[ActeDocument]:
    query = (
        select(ActeDocument)
        .where(ActeDocument.acte_id == acte_id)
        .order_by(col(ActeDocument.created_at), col(ActeDocument.role))
    )
    return (await session.exec(query)).all()


async def documents_of_many(
    session: AsyncSession, acte_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ActeDocument]]:
    """The documents of several actes in one query (a page of a list)."""
    found: dict[uuid.UUID, list[ActeDocument]] = {acte_id: [] for acte_id in acte_ids}
    if not acte_ids:
        return found
    query = (
        select(ActeDocument)
        .where(col(ActeDocument.acte_id).in_(list(acte_ids)))
        .order_by(col(ActeDocument.created_at), col(ActeDocument.role))
    )
    for document in (await session.exec(query)).all():
        found[document.acte_id].append(document)
    return found


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


async def count_waiting_due(session: AsyncSession, now: datetime) -> int:
    due = col(Acte.next_attempt_at).is_(None) | (col(Acte.next_attempt_at) <= now)
    query = (
        select(func.count())
        .select_from(Acte)
        .where(Acte.state == ActeState.WAITING_FOR_TRANSMISSION.value, due)
    )
    return int((await session.exec(query)).one())


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


# -- Listing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActeFilters:
    """What ``GET /v1/actes`` narrows the organisation's actes by."""

    state: str | None = None
    nature: int | None = None
    numero_interne: str | None = None
    objet: str | None = None
    decided_from: date | None = None
    decided_to: date | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    overdue: bool | None = None


async def list_actes(
    session: AsyncSession,
    siren: str,
    filters: ActeFilters,
    after: PageCursor | None,
    limit: int,
) -> Sequence[Acte]:
    """The organisation's actes, newest first, ``limit`` of them after the cursor."""
    query = select(Acte).where(Acte.siren == siren)
    if filters.state is not None:
        query = query.where(Acte.state == filters.state)
    if filters.nature is not None:
        query = query.where(Acte.nature == filters.nature)
    if filters.numero_interne is not None:
        query = query.where(Acte.numero_interne == filters.numero_interne)
    if filters.objet:
        # Case-insensitive containment; the wildcards a caller types are taken literally.
        literal = filters.objet.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Acte.objet).ilike(f"%{literal}%", escape="\\"))
    if filters.decided_from is not None:
        query = query.where(col(Acte.date_decision) >= filters.decided_from)
    if filters.decided_to is not None:
        query = query.where(col(Acte.date_decision) <= filters.decided_to)
    if filters.created_from is not None:
        query = query.where(col(Acte.created_at) >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(col(Acte.created_at) <= filters.created_to)
    if filters.overdue is True:
        query = query.where(
            col(Acte.acknowledgement_overdue_at).is_not(None)
            | col(Acte.transmission_stuck_at).is_not(None)
        )
    query = query.where(keyset_after(col(Acte.created_at), col(Acte.id), after))
    query = query.order_by(col(Acte.created_at).desc(), col(Acte.id).desc()).limit(limit)
    return (await session.exec(query)).all()


# -- Messages after the dépôt -----------------------------------------------------------


async def messages_of(session: AsyncSession, acte_id: uuid.UUID) -> Sequence[ActeMessage]:
    query = select(ActeMessage).where(ActeMessage.acte_id == acte_id)
    return (await session.exec(query.order_by(col(ActeMessage.number)))).all()


async def get_message(
    session: AsyncSession, acte_id: uuid.UUID, message_id: uuid.UUID
) -> ActeMessage | None:
    message = await session.get(ActeMessage, message_id, populate_existing=True)
    if message is None or message.acte_id != acte_id:
        return None
    return message


async def next_message_number(session: AsyncSession, acte_id: uuid.UUID) -> int:
    query = select(func.max(ActeMessage.number)).where(ActeMessage.acte_id == acte_id)
    current = (await session.exec(query)).first()
    return int(current or 0) + 1


async def outgoing_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[ActeMessage]:
    due = col(ActeMessage.next_attempt_at).is_(None) | (col(ActeMessage.next_attempt_at) <= now)
    query = (
        select(ActeMessage)
        .where(
            ActeMessage.direction == MessageDirection.TO_PREFECTURE.value,
            ActeMessage.state == MessageState.PENDING.value,
            due,
        )
        .order_by(col(ActeMessage.created_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def outgoing_awaiting(
    session: AsyncSession, acte_id: uuid.UUID, codes: Iterable[str]
) -> ActeMessage | None:
    """The oldest answer of the acte among ``codes`` sent and not yet acknowledged."""
    query = (
        select(ActeMessage)
        .where(
            ActeMessage.acte_id == acte_id,
            ActeMessage.direction == MessageDirection.TO_PREFECTURE.value,
            ActeMessage.state == MessageState.SENT.value,
            col(ActeMessage.code).in_(list(codes)),
        )
        .order_by(col(ActeMessage.number))
    )
    return (await session.exec(query.with_for_update())).first()


# -- Classifications --------------------------------------------------------------------


async def latest_classification(
    session: AsyncSession, departement: str
) -> StoredClassification | None:
    query = (
        select(StoredClassification)
        .where(StoredClassification.departement == departement)
        .order_by(col(StoredClassification.date_classification).desc())
    )
    return (await session.exec(query.limit(1))).first()


async def classification_known(session: AsyncSession, departement: str, day: date) -> bool:
    query = select(StoredClassification.id).where(
        StoredClassification.departement == departement,
        StoredClassification.date_classification == day,
    )
    return (await session.exec(query)).first() is not None


async def departements_in_use(session: AsyncSession) -> Sequence[str]:
    return (await session.exec(select(Acte.departement).distinct())).all()


# -- Late actes and the hourly volume ---------------------------------------------------


async def acknowledgement_overdue(
    session: AsyncSession, transmitted_before: datetime, limit: int
) -> Sequence[Acte]:
    """Actes transmitted before the cutoff, still without an answer, not yet reported."""
    query = (
        select(Acte)
        .where(
            Acte.state == ActeState.TRANSMITTED.value,
            col(Acte.transmitted_at) < transmitted_before,
            col(Acte.acknowledgement_overdue_at).is_(None),
        )
        .order_by(col(Acte.transmitted_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def transmission_stuck(
    session: AsyncSession, claimed_before: datetime, limit: int
) -> Sequence[tuple[Acte, datetime]]:
    """Actes ``transmitting`` since a claim older than the cutoff, not yet reported."""
    claim = ActeStateChange
    query = (
        select(Acte, claim.changed_at)
        .join(claim, col(claim.id) == col(Acte.transmission_number))
        .where(
            Acte.state == ActeState.TRANSMITTING.value,
            col(claim.changed_at) < claimed_before,
            col(Acte.transmission_stuck_at).is_(None),
        )
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.exec(query)).all()]


async def count_by(session: AsyncSession) -> dict[str, int]:
    """Gauges: actes late for an acknowledgement, stuck transmitting, waiting to be sent."""
    late = col(Acte.acknowledgement_overdue_at).is_not(None) & (
        Acte.state == ActeState.TRANSMITTED.value
    )
    stuck = col(Acte.transmission_stuck_at).is_not(None) & (
        Acte.state == ActeState.TRANSMITTING.value
    )
    waiting = Acte.state == ActeState.WAITING_FOR_TRANSMISSION.value
    counts: dict[str, int] = {}
    for name, condition in (("overdue", late), ("stuck", stuck), ("waiting", waiting)):
        found = (await session.exec(select(func.count()).select_from(Acte).where(condition))).one()
        counts[name] = int(found)
    return counts


async def sent_since(session: AsyncSession, since: datetime) -> int:
    """Transmissions the gateway took since ``since``, or in flight now."""
    recent = col(Acte.transmitted_at) >= since
    in_flight = Acte.state == ActeState.TRANSMITTING.value
    query = select(func.count()).select_from(Acte).where(recent | in_flight)
    actes = int((await session.exec(query)).one())
    messages_query = (
        select(func.count())
        .select_from(ActeMessage)
        .where(
            ActeMessage.direction == MessageDirection.TO_PREFECTURE.value,
            col(ActeMessage.sent_at) >= since,
        )
    )
    return actes + int((await session.exec(messages_query)).one())


async def mark_message_sent(
    session: AsyncSession,
    message_id: uuid.UUID,
    prefecture_transmission_id: str,
    now: datetime,
) -> bool:
    """Record a pending message sent, unless another sender recorded it first."""
    statement = (
        update(ActeMessage)
        .where(
            col(ActeMessage.id) == message_id,
            col(ActeMessage.state) == MessageState.PENDING.value,
        )
        .values(
            state=MessageState.SENT.value,
            sent_at=now,
            updated_at=now,
            attempts=col(ActeMessage.attempts) + 1,
            prefecture_transmission_id=prefecture_transmission_id,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    result = await session.exec(statement)
    return int(getattr(result, "rowcount", 0) or 0) == 1
