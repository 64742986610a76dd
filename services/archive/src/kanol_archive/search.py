"""Finding an organisation's archives, and reading them with every access logged.

A search always runs within the caller's organisation; another organisation's archive is
answered exactly like a missing one. Every read (a search, an archive's description, an
object's content) is written in the logbook with who read what before the answer leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive import logbook, retention
from kanol_archive.logbook import Operation
from kanol_archive.models import Archive, ArchiveObject, ArchivePage, ArchivePublic
from kanol_archive.seda.rules import ACTE_NATURE_CODES, PES_FLOW_KIND, TRANSFER_KIND
from kanol_common.auth import Caller
from kanol_common.errors import BadRequest, NotFound, Problem
from kanol_common.pagination import PageCursor, clamp_limit, decode_optional, keyset_after, page_of
from kanol_common.storage import ObjectNotFound, ObjectStore

KINDS: Final = (
    *(f"acte.{code}" for code in ACTE_NATURE_CODES.values()),
    PES_FLOW_KIND,
    TRANSFER_KIND,
)


class ArchiveNotFound(NotFound):
    type_slug = "archive-not-found"
    title = "Archive not found"


class ArchiveObjectNotFound(NotFound):
    type_slug = "archive-object-not-found"
    title = "Archive object not found"


class ArchiveEliminated(Problem):
    status = 410
    type_slug = "archive-eliminated"
    title = "Archive eliminated"


class UnknownKind(BadRequest):
    type_slug = "unknown-archive-kind"
    title = "Unknown kind of archive"


@dataclass(frozen=True)
class ArchiveQuery:
    """What a search may filter on; the organisation is always the caller's."""

    acte_id: str | None = None
    identifiant_acte: str | None = None
    kind: str | None = None
    text: str | None = None
    deposited_from: date | None = None
    deposited_to: date | None = None
    decided_from: date | None = None
    decided_to: date | None = None

    def described(self) -> dict[str, Any]:
        return {name: str(value) for name, value in vars(self).items() if value is not None}


async def search(
    session: AsyncSession,
    caller: Caller,
    query: ArchiveQuery,
    *,
    cursor: str | None,
    limit: int | None,
) -> ArchivePage:
    """The caller's archives matching ``query``, newest deposit first, by cursor pages."""
    after = decode_optional(cursor)
    limit = clamp_limit(limit)

    statement = select(Archive).where(Archive.siren == caller.siren, retention.not_destroyed())
    for condition in _conditions(query):
        statement = statement.where(condition)
    statement = statement.where(keyset_after(col(Archive.deposited_at), col(Archive.id), after))
    statement = statement.order_by(col(Archive.deposited_at).desc(), col(Archive.id).desc())
    rows = list((await session.exec(statement.limit(limit + 1))).all())
    items, next_cursor = page_of(rows, limit, lambda a: PageCursor(a.deposited_at, a.id))

    await logbook.append(
        session,
        operation=Operation.ARCHIVES_SEARCHED,
        siren=caller.siren,
        actor=caller.client_id,
        details={"token_id": caller.token_id, "query": query.described(), "found": len(items)},
    )
    await session.commit()
    return ArchivePage(
        items=[ArchivePublic.model_validate(item, from_attributes=True) for item in items],
        next_cursor=next_cursor,
    )


def _conditions(query: ArchiveQuery) -> list[Any]:
    conditions: list[Any] = []
    if query.acte_id is not None:
        conditions.append(col(Archive.acte_id) == query.acte_id)
    if query.identifiant_acte is not None:
        conditions.append(col(Archive.identifiant_acte) == query.identifiant_acte)
    if query.kind is not None:
        condition = retention.kind_condition(query.kind)
        if condition is None:
            raise UnknownKind(f"Kinds are {', '.join(KINDS)}.")
        conditions.append(condition)
    if query.text:
        # TODO: a substring match scans the organisation's archives; beyond some hundred
        # thousand archives per organisation it needs a full-text index (tsvector, trigram).
        pattern = "%" + query.text.lower().replace("\\", "\\\\").replace("%", "\\%") + "%"
        pattern = pattern.replace("_", "\\_")
        conditions.append(func.lower(col(Archive.title)).like(pattern, escape="\\"))
    if query.deposited_from is not None:
        conditions.append(col(Archive.deposited_at) >= _start_of(query.deposited_from))
    if query.deposited_to is not None:
        conditions.append(col(Archive.deposited_at) < _start_of(query.deposited_to, 1))
    if query.decided_from is not None:
        conditions.append(col(Archive.date_decision) >= query.decided_from)
    if query.decided_to is not None:
        conditions.append(col(Archive.date_decision) <= query.decided_to)
    return conditions


def _start_of(day: date, plus_days: int = 0) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC) + timedelta(days=plus_days)


async def archive_of(session: AsyncSession, archive_id: uuid.UUID, siren: str) -> Archive:
    archive = (
        await session.exec(select(Archive).where(Archive.id == archive_id, Archive.siren == siren))
    ).first()
    # Another organisation's archive answers exactly like a missing one.
    if archive is None:
        raise ArchiveNotFound(f"No archive {archive_id}.")
    return archive


async def log_read(session: AsyncSession, caller: Caller, archive_id: uuid.UUID) -> None:
    """Log that the caller read the archive's description, and commit it."""
    await logbook.append(
        session,
        operation=Operation.ARCHIVE_READ,
        siren=caller.siren,
        archive_id=str(archive_id),
        actor=caller.client_id,
        details={"token_id": caller.token_id},
    )
    await session.commit()


async def open_object(
    session: AsyncSession,
    store: ObjectStore,
    caller: Caller,
    archive_id: uuid.UUID,
    sha256: str,
) -> tuple[ArchiveObject, AsyncIterator[bytes]]:
    """The object and its content, once the download is logged and committed.

    The first chunk is read before the logbook entry, so a missing content answers 404
    rather than a broken stream; a destroyed archive's objects answer 410.
    """
    archive = await archive_of(session, archive_id, caller.siren)
    destroyed_at = await retention.destroyed_archive(session, archive.id)
    if destroyed_at is not None:
        raise ArchiveEliminated(
            f"Archive {archive_id} was eliminated on {destroyed_at.date()}; its description "
            "and fingerprints remain."
        )
    item = (
        await session.exec(
            select(ArchiveObject)
            .where(ArchiveObject.archive_id == archive.id, ArchiveObject.sha256 == sha256.lower())
            .order_by(col(ArchiveObject.position))
        )
    ).first()
    if item is None:
        raise ArchiveObjectNotFound(f"Archive {archive_id} holds no object {sha256}.")

    chunks = store.open_chunks(item.storage_key)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound as exc:
        raise ArchiveObjectNotFound(f"The content of object {sha256} is missing.") from exc

    await logbook.append(
        session,
        operation=Operation.OBJECT_DOWNLOADED,
        siren=caller.siren,
        archive_id=str(archive.id),
        actor=caller.client_id,
        details={"token_id": caller.token_id, "sha512": item.sha512, "filename": item.filename},
    )
    await session.commit()
    return item, _prepend(first, chunks)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
