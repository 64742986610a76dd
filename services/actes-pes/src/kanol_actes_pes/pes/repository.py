"""Every query of PES. Nothing here commits: the request or the background task does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.pes.models import (
    PesCursor,
    PesDocument,
    PesFlow,
    PesFlowState,
    PesRetour,
    PesStateChange,
)
from kanol_common.pagination import PageCursor, keyset_after


async def get_flow(session: AsyncSession, flow_id: uuid.UUID) -> PesFlow | None:
    return await session.get(PesFlow, flow_id, populate_existing=True)


async def get_flow_of(session: AsyncSession, flow_id: uuid.UUID, siren: str) -> PesFlow | None:
    """The flow if it belongs to the organisation ``siren``; another's is as good as absent."""
    flow = await get_flow(session, flow_id)
    return flow if flow is not None and flow.siren == siren else None


async def find_duplicate(
    session: AsyncSession, id_coll: str, nom_fic: str, sha256: str
) -> PesFlow | None:
    same_name = and_(col(PesFlow.id_coll) == id_coll, col(PesFlow.nom_fic) == nom_fic)
    query = select(PesFlow).where(or_(same_name, col(PesFlow.sha256) == sha256)).limit(1)
    return (await session.exec(query)).first()


async def documents_of(session: AsyncSession, flow_id: uuid.UUID) -> Sequence[PesDocument]:
    query = (
        select(PesDocument)
        .where(PesDocument.flow_id == flow_id)
        .order_by(col(PesDocument.created_at), col(PesDocument.role))
    )
    return (await session.exec(query)).all()


async def document_of(
    session: AsyncSession, flow_id: uuid.UUID, role: str
) -> tuple[str, PesDocument | None] | None:
    """The SIREN of the flow's organisation and its document ``role``; ``None``: no flow."""
    same = (col(PesDocument.flow_id) == col(PesFlow.id)) & (col(PesDocument.role) == role)
    query = (
        select(PesFlow.siren, PesDocument)
        .select_from(PesFlow)
        .outerjoin(PesDocument, same)
        .where(PesFlow.id == flow_id)
    )
    row = (await session.exec(query)).first()
    return None if row is None else (row[0], row[1])


async def history_of(session: AsyncSession, flow_id: uuid.UUID) -> Sequence[PesStateChange]:
    query = (
        select(PesStateChange)
        .where(PesStateChange.flow_id == flow_id)
        .order_by(col(PesStateChange.id))
    )
    return (await session.exec(query)).all()


async def compare_and_set_state(
    session: AsyncSession,
    flow_id: uuid.UUID,
    expected: PesFlowState,
    target: PesFlowState,
    values: dict[str, Any],
) -> bool:
    """Move the flow unless someone moved it first: of two racing processes, one wins."""
    statement = (
        update(PesFlow)
        .where(col(PesFlow.id) == flow_id, col(PesFlow.state) == expected.value)
        .values(state=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    result = await session.exec(statement)
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def submitted_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[uuid.UUID]:
    due = col(PesFlow.next_attempt_at).is_(None) | (col(PesFlow.next_attempt_at) <= now)
    query = (
        select(PesFlow.id)
        .where(PesFlow.state == PesFlowState.SUBMITTED.value, due)
        .order_by(col(PesFlow.created_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def transmitting_due(
    session: AsyncSession, now: datetime | None, lease_cutoff: datetime | None, limit: int
) -> Sequence[uuid.UUID]:
    """Flows left ``transmitting`` to settle: their retry is due, or their lease ran out.

    Without ``now``, every flow ``transmitting`` (at start, nothing of this process is in
    flight).
    """
    query = select(PesFlow.id).where(PesFlow.state == PesFlowState.TRANSMITTING.value)
    if now is not None and lease_cutoff is not None:
        retry_due = col(PesFlow.next_attempt_at) <= now
        lease_over = and_(
            col(PesFlow.next_attempt_at).is_(None), col(PesFlow.updated_at) <= lease_cutoff
        )
        query = query.where(or_(retry_due, lease_over))
    return (await session.exec(query.order_by(col(PesFlow.updated_at)).limit(limit))).all()


async def flow_for_acquit(
    session: AsyncSession, depot_id: str | None, id_coll: str, nom_fic: str
) -> PesFlow | None:
    """The flow an acknowledgement answers: by Hélios's deposit id, else by IdColl+NomFic."""
    if depot_id is not None:
        query = select(PesFlow).where(PesFlow.helios_id == depot_id)
        found = (await session.exec(query)).first()
        if found is not None:
            return found
    query = select(PesFlow).where(PesFlow.id_coll == id_coll, PesFlow.nom_fic == nom_fic)
    return (await session.exec(query)).first()


async def stalled(
    session: AsyncSession, state: PesFlowState, since_before: datetime, limit: int = 10_000
) -> Sequence[uuid.UUID]:
    """Flows in ``state`` whose last move is older than ``since_before``, oldest first."""
    query = (
        select(PesFlow.id)
        .where(PesFlow.state == state.value, col(PesFlow.updated_at) < since_before)
        .order_by(col(PesFlow.updated_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def late_unreported(
    session: AsyncSession, state: PesFlowState, since_before: datetime, limit: int = 500
) -> Sequence[PesFlow]:
    """Flows in ``state`` since before ``since_before`` that were not reported late yet."""
    query = (
        select(PesFlow)
        .where(
            PesFlow.state == state.value,
            col(PesFlow.updated_at) < since_before,
            col(PesFlow.late_reported_at).is_(None),
        )
        .order_by(col(PesFlow.updated_at))
        .limit(limit)
    )
    return (await session.exec(query)).all()


@dataclass(frozen=True)
class FlowFilters:
    state: str | None = None
    id_coll: str | None = None
    nom_fic: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None
    dte_str: date | None = None
    # Transmitted without an acknowledgement since before this moment.
    overdue_before: datetime | None = None


async def list_flows(
    session: AsyncSession,
    siren: str,
    filters: FlowFilters,
    after: PageCursor | None,
    limit: int,
) -> Sequence[PesFlow]:
    """An organisation's flows, newest first, after the keyset position ``after``."""
    query = select(PesFlow).where(PesFlow.siren == siren)
    if filters.state is not None:
        query = query.where(PesFlow.state == filters.state)
    if filters.id_coll is not None:
        query = query.where(PesFlow.id_coll == filters.id_coll)
    if filters.nom_fic is not None:
        query = query.where(PesFlow.nom_fic == filters.nom_fic)
    if filters.dte_str is not None:
        query = query.where(PesFlow.dte_str == filters.dte_str)
    if filters.overdue_before is not None:
        query = query.where(
            PesFlow.state == PesFlowState.TRANSMITTED.value,
            col(PesFlow.updated_at) < filters.overdue_before,
        )
    if filters.created_from is not None:
        query = query.where(col(PesFlow.created_at) >= filters.created_from)
    if filters.created_until is not None:
        query = query.where(col(PesFlow.created_at) < filters.created_until)
    query = query.where(keyset_after(col(PesFlow.created_at), col(PesFlow.id), after))
    query = query.order_by(col(PesFlow.created_at).desc(), col(PesFlow.id).desc()).limit(limit)
    return (await session.exec(query)).all()


async def list_retours(
    session: AsyncSession,
    siren: str,
    id_coll: str | None,
    after: PageCursor | None,
    limit: int,
) -> Sequence[PesRetour]:
    query = select(PesRetour).where(PesRetour.siren == siren)
    if id_coll is not None:
        query = query.where(PesRetour.id_coll == id_coll)
    query = query.where(keyset_after(col(PesRetour.received_at), col(PesRetour.id), after))
    query = query.order_by(col(PesRetour.received_at).desc(), col(PesRetour.id).desc())
    return (await session.exec(query.limit(limit))).all()


async def get_retour(session: AsyncSession, retour_id: uuid.UUID) -> PesRetour | None:
    return await session.get(PesRetour, retour_id)


async def retour_known(session: AsyncSession, helios_id: str) -> bool:
    query = select(PesRetour.id).where(PesRetour.helios_id == helios_id)
    return (await session.exec(query)).first() is not None


async def load_cursor(session: AsyncSession, name: str) -> str | None:
    found = await session.get(PesCursor, name, populate_existing=True)
    return None if found is None else found.cursor


async def save_cursor(session: AsyncSession, name: str, cursor: str, now: datetime) -> None:
    found = await session.get(PesCursor, name)
    if found is None:
        session.add(PesCursor(name=name, cursor=cursor, updated_at=now))
        return
    found.cursor = cursor
    found.updated_at = now
    session.add(found)
