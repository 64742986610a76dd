"""Every query of archive: archives and their objects, always scoped to an organisation."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive.models import CHECKING, DONE, RECEIVED, Archive, ArchiveObject, PendingTransfer
from kanol_common.db import as_utc


class InvalidCursor(ValueError):
    """A pagination cursor this service did not hand out."""


@dataclass(frozen=True)
class ArchiveCursor:
    """Where a page of archives ended: newest first, by deposit time then id."""

    deposited_at: datetime
    archive_id: uuid.UUID

    @classmethod
    def after(cls, archive: Archive) -> ArchiveCursor:
        return cls(as_utc(archive.deposited_at), archive.id)

    def encode(self) -> str:
        raw = json.dumps({"d": self.deposited_at.isoformat(), "i": str(self.archive_id)})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ArchiveCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            fields = json.loads(raw)
            return cls(as_utc(datetime.fromisoformat(fields["d"])), uuid.UUID(fields["i"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise InvalidCursor(text) from exc


class ArchiveRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_by_source_event(self, source_event_id: str) -> Archive | None:
        result = await self.session.exec(
            select(Archive).where(Archive.source_event_id == source_event_id)
        )
        return result.first()

    async def add_if_new(self, archive: Archive) -> bool:
        """Insert the archive unless one was already made from the same event.

        The unique ``source_event_id`` decides, so two consumers racing on the same event
        (a replay under another group) make one archive, and the loser learns it here
        without an error that would abort its transaction.
        """
        values = archive.model_dump()
        if self.session.get_bind().dialect.name == "postgresql":
            statement = (
                postgresql_insert(Archive)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["source_event_id"])
                .returning(col(Archive.id))
            )
        else:
            statement = (
                sqlite_insert(Archive)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["source_event_id"])
                .returning(col(Archive.id))
            )
        result = await self.session.exec(statement)
        return result.scalar_one_or_none() is not None

    def add_objects(self, objects: Sequence[ArchiveObject]) -> None:
        self.session.add_all(objects)

    async def list_for_organisation(
        self,
        siren: str,
        *,
        acte_id: str | None = None,
        identifiant_acte: str | None = None,
        after: ArchiveCursor | None = None,
        limit: int = 50,
    ) -> list[Archive]:
        query = select(Archive).where(Archive.siren == siren)
        if acte_id is not None:
            query = query.where(Archive.acte_id == acte_id)
        if identifiant_acte is not None:
            query = query.where(Archive.identifiant_acte == identifiant_acte)
        if after is not None:
            query = query.where(
                or_(
                    col(Archive.deposited_at) < after.deposited_at,
                    and_(
                        col(Archive.deposited_at) == after.deposited_at,
                        col(Archive.id) < after.archive_id,
                    ),
                )
            )
        query = query.order_by(col(Archive.deposited_at).desc(), col(Archive.id).desc())
        result = await self.session.exec(query.limit(limit))
        return list(result.all())

    async def get_for_organisation(self, archive_id: uuid.UUID, siren: str) -> Archive | None:
        result = await self.session.exec(
            select(Archive).where(Archive.id == archive_id, Archive.siren == siren)
        )
        return result.first()

    async def objects_of(self, archive_id: uuid.UUID) -> list[ArchiveObject]:
        result = await self.session.exec(
            select(ArchiveObject)
            .where(ArchiveObject.archive_id == archive_id)
            .order_by(col(ArchiveObject.position))
        )
        return list(result.all())

    async def object_of(self, archive_id: uuid.UUID, sha256: str) -> ArchiveObject | None:
        result = await self.session.exec(
            select(ArchiveObject)
            .where(ArchiveObject.archive_id == archive_id, ArchiveObject.sha256 == sha256)
            .order_by(col(ArchiveObject.position))
        )
        return result.first()


class PendingTransferRepository:
    """The transfers received with ``Prefer: respond-async`` and where their check stands."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, pending_id: uuid.UUID) -> PendingTransfer | None:
        return await self.session.get(PendingTransfer, pending_id)

    async def claimable(self, lease_ended_before: datetime) -> PendingTransfer | None:
        """The oldest transfer waiting, or one whose checker's lease has run out."""
        query = (
            select(PendingTransfer)
            .where(
                (col(PendingTransfer.state) == RECEIVED)
                | (
                    (col(PendingTransfer.state) == CHECKING)
                    & (col(PendingTransfer.claimed_at) < lease_ended_before)
                )
            )
            .order_by(col(PendingTransfer.received_at))
            .limit(1)
        )
        return (await self.session.exec(query)).first()

    async def claim(self, candidate: PendingTransfer, now: datetime) -> bool:
        """A compare-and-set on what was read: another replica's claim makes it miss."""
        claimed_at = col(PendingTransfer.claimed_at)
        result = await self.session.exec(
            update(PendingTransfer)
            .where(
                col(PendingTransfer.id) == candidate.id,
                col(PendingTransfer.state) == candidate.state,
                claimed_at.is_(None)
                if candidate.claimed_at is None
                else claimed_at == candidate.claimed_at,
            )
            .values(state=CHECKING, claimed_at=now)
        )
        return result.rowcount == 1

    async def finish(
        self,
        pending_id: uuid.UUID,
        *,
        status: int,
        reply_sha256: str,
        archive_id: uuid.UUID | None,
        now: datetime,
    ) -> None:
        await self.session.exec(
            update(PendingTransfer)
            .where(col(PendingTransfer.id) == pending_id)
            .values(
                state=DONE,
                finished_at=now,
                status=status,
                reply_sha256=reply_sha256,
                archive_id=archive_id,
            )
        )

    async def note_error(self, pending_id: uuid.UUID, error: str) -> None:
        await self.session.exec(
            update(PendingTransfer)
            .where(col(PendingTransfer.id) == pending_id)
            .values(error=error[:2000])
        )

    async def finished_before(self, cutoff: datetime, limit: int) -> list[PendingTransfer]:
        result = await self.session.exec(
            select(PendingTransfer)
            .where(PendingTransfer.state == DONE, col(PendingTransfer.finished_at) < cutoff)
            .order_by(col(PendingTransfer.finished_at))
            .limit(limit)
        )
        return list(result.all())

    async def forget(self, pending_ids: Sequence[uuid.UUID]) -> None:
        await self.session.exec(
            delete(PendingTransfer).where(col(PendingTransfer.id).in_(pending_ids))
        )
