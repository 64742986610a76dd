"""Depositing documents in the archive, and reading archives back for their organisation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import uuid_utils

from kanol_archive.documents import FetchedDocument
from kanol_archive.models import (
    Archive,
    ArchiveDetail,
    ArchiveObject,
    ArchiveObjectPublic,
    ArchivePage,
    ArchivePublic,
)
from kanol_archive.repository import ArchiveCursor, ArchiveRepository, InvalidCursor
from kanol_common.envelope import CloudEvent
from kanol_common.errors import BadRequest, NotFound
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.archive import ArchiveDeposited
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore

log = get_logger(__name__)

MAX_PAGE_SIZE = 100


class ArchiveNotFound(NotFound):
    type_slug = "archive-not-found"
    title = "Archive not found"


class ArchiveObjectNotFound(NotFound):
    type_slug = "archive-object-not-found"
    title = "Archive object not found"


class InvalidPageCursor(BadRequest):
    type_slug = "invalid-cursor"
    title = "Invalid pagination cursor"


class FingerprintMismatch(Exception):
    """The store computed another SHA-256 than the one checked at fetch time: a bug."""


@dataclass(frozen=True)
class Deposit:
    """A new archive and its objects, as written in the current transaction."""

    archive: Archive
    objects: list[ArchiveObject]

    def deposited_event(self) -> ArchiveDeposited:
        archive = self.archive
        return ArchiveDeposited(
            archive_id=str(archive.id),
            siren=archive.siren,
            source_event_id=archive.source_event_id,
            source_event_type=archive.source_event_type,
            acte_id=archive.acte_id,
            identifiant_acte=archive.identifiant_acte,
            object_count=len(self.objects),
            total_size=sum(item.size for item in self.objects),
            deposited_at=archive.deposited_at,
        )


def _new_id() -> uuid.UUID:
    # Time-ordered, so new archives land at the end of the primary key's index.
    return uuid.UUID(str(uuid_utils.uuid7()))


def object_download_url(archive_id: uuid.UUID, sha256: str) -> str:
    return f"/v1/archives/{archive_id}/objects/{sha256}"


class ArchiveService:
    def __init__(self, repository: ArchiveRepository, store: LocalObjectStore) -> None:
        self.repository = repository
        self.store = store

    async def already_deposited(self, source_event_id: str) -> Archive | None:
        return await self.repository.find_by_source_event(source_event_id)

    async def deposit_acte(
        self,
        acte: ActeAcknowledged,
        source: CloudEvent,
        documents: Sequence[FetchedDocument],
    ) -> Deposit | None:
        """Store the acte's checked documents and record one archive for the event.

        ``None`` when an archive already exists for this event: another consumer got there
        first. The objects are stored before the rows: they are addressed by content, so a
        retry after a crash stores the same objects again, harmlessly.
        """
        archive = Archive(
            id=_new_id(),
            siren=acte.siren,
            source_event_id=source.id,
            source_event_type=source.type,
            acte_id=acte.acte_id,
            identifiant_acte=acte.identifiant_acte,
            title=acte.objet,
            nature=acte.nature,
            matiere=acte.matiere,
            date_decision=acte.date_decision,
            deposited_at=datetime.now(UTC),
        )
        objects = [
            await self._store(archive.id, position, item) for position, item in enumerate(documents)
        ]

        if not await self.repository.add_if_new(archive):
            log.info("archive.already_deposited", source_event_id=source.id, tenant=acte.siren)
            return None

        self.repository.add_objects(objects)
        log.info(
            "archive.deposited",
            archive_id=str(archive.id),
            tenant=archive.siren,
            acte_id=archive.acte_id,
            objects=len(objects),
        )
        return Deposit(archive, objects)

    async def _store(
        self, archive_id: uuid.UUID, position: int, document: FetchedDocument
    ) -> ArchiveObject:
        stored = await self.store.put(document.content)
        if stored.sha256 != document.ref.sha256:
            raise FingerprintMismatch(f"{document.ref.filename}: stored as {stored.sha256}")
        return ArchiveObject(
            id=_new_id(),
            archive_id=archive_id,
            position=position,
            role=document.ref.role,
            filename=document.ref.filename,
            media_type=document.ref.media_type,
            size=stored.size,
            sha256=stored.sha256,
            sha512=stored.sha512,
            storage_key=stored.sha256,
        )

    # -- reading -----------------------------------------------------------------------

    async def list_archives(
        self,
        siren: str,
        *,
        acte_id: str | None,
        identifiant_acte: str | None,
        cursor: str | None,
        limit: int,
    ) -> ArchivePage:
        try:
            after = ArchiveCursor.decode(cursor) if cursor else None
        except InvalidCursor as exc:
            raise InvalidPageCursor("The cursor was not handed out by this API.") from exc

        limit = max(1, min(limit, MAX_PAGE_SIZE))
        archives = await self.repository.list_for_organisation(
            siren, acte_id=acte_id, identifiant_acte=identifiant_acte, after=after, limit=limit + 1
        )
        page, more = archives[:limit], len(archives) > limit
        next_cursor = ArchiveCursor.after(page[-1]).encode() if more else None
        return ArchivePage(
            items=[ArchivePublic.model_validate(item, from_attributes=True) for item in page],
            next_cursor=next_cursor,
        )

    async def get_archive(self, archive_id: uuid.UUID, siren: str) -> ArchiveDetail:
        archive = await self._archive_of(archive_id, siren)
        objects = await self.repository.objects_of(archive.id)
        return ArchiveDetail(
            **ArchivePublic.model_validate(archive, from_attributes=True).model_dump(),
            objects=[_public_object(archive.id, item) for item in objects],
        )

    async def open_object(
        self, archive_id: uuid.UUID, siren: str, sha256: str
    ) -> tuple[ArchiveObject, Iterator[bytes]]:
        """An object of the organisation's archive and an iterator over its content."""
        archive = await self._archive_of(archive_id, siren)
        item = await self.repository.object_of(archive.id, sha256.lower())
        if item is None:
            raise ArchiveObjectNotFound(f"Archive {archive_id} holds no object {sha256}.")
        if not await self.store.exists(item.storage_key):
            log.error("archive.object_missing", archive_id=str(archive_id), sha256=sha256)
            raise ArchiveObjectNotFound(f"The content of object {sha256} is missing.")
        return item, self.store.iter_chunks(item.storage_key)

    async def _archive_of(self, archive_id: uuid.UUID, siren: str) -> Archive:
        # Another organisation's archive answers exactly like a missing one.
        archive = await self.repository.get_for_organisation(archive_id, siren)
        if archive is None:
            raise ArchiveNotFound(f"No archive {archive_id}.")
        return archive


def _public_object(archive_id: uuid.UUID, item: ArchiveObject) -> ArchiveObjectPublic:
    return ArchiveObjectPublic(
        role=item.role,
        filename=item.filename,
        media_type=item.media_type,
        size=item.size,
        sha256=item.sha256,
        sha512=item.sha512,
        download_url=object_download_url(archive_id, item.sha256),
    )
