"""Depositing documents in the archive, and reading archives back for their organisation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import uuid_utils

from kanol_archive.documents import FetchedDocument
from kanol_archive.logbook import Logbook
from kanol_archive.models import (
    Archive,
    ArchiveDetail,
    ArchiveObject,
    ArchiveObjectPublic,
    ArchivePublic,
)
from kanol_archive.repository import ArchiveRepository
from kanol_archive.seda.deposits import (
    DepositedObject,
    Parties,
    acte_transfer,
    pes_transfer,
)
from kanol_archive.seda.journal import DEPOSITED, DepositJournal
from kanol_archive.seda.manifest import TransferDescription, manifest_bytes
from kanol_archive.seda.reply import (
    CHECK_DIGEST,
    CHECK_SEDA,
    STORAGE,
    ReplyCode,
    TransferReply,
    checks_passed,
    reply_bytes,
)
from kanol_archive.seda.repository import (
    DepositRepository,
    acte_key,
    pes_flow_key,
    transfer_key,
)
from kanol_archive.seda.rules import PES_FLOW_KIND, DefaultRules, RuleSource, acte_kind
from kanol_archive.seda.schema import SedaVersion
from kanol_common.envelope import CloudEvent
from kanol_common.errors import NotFound
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.archive import ArchiveDeposited
from kanol_common.events.pes import PesFlowAcknowledged
from kanol_common.holds import hold, put_held
from kanol_common.logging import get_logger
from kanol_common.storage import ObjectStore

log = get_logger(__name__)

# The archive's identifier as ArchivalAgency in SEDA messages, unless settings say otherwise.
DEFAULT_ARCHIVAL_AGENCY = "KANOL-SAE"
# The version of the manifests archive builds itself; received transfers keep their own.
DEPOSIT_SEDA_VERSION = SedaVersion.V2_1


class ArchiveNotFound(NotFound):
    type_slug = "archive-not-found"
    title = "Archive not found"


class SedaDocumentNotFound(NotFound):
    type_slug = "seda-document-not-found"
    title = "SEDA document not found"


class FingerprintMismatch(Exception):
    """The store computed another SHA-256 than the one checked at fetch time: a bug."""


@dataclass(frozen=True)
class Deposit:
    """A new archive and its objects, as written in the current transaction."""

    archive: Archive
    objects: list[ArchiveObject]
    reply: bytes = b""

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
            source_kind=archive.source_kind,
            pes_flow_id=archive.pes_flow_id,
            seda_version=archive.seda_version,
            message_identifier=archive.message_identifier,
            reply_identifier=archive.reply_identifier,
            manifest_url=manifest_url(archive.id),
            reply_url=reply_url(archive.id),
        )


def new_id() -> uuid.UUID:
    # Time-ordered, so new archives land at the end of the primary key's index.
    return uuid.UUID(str(uuid_utils.uuid7()))


def object_download_url(archive_id: uuid.UUID, sha256: str) -> str:
    return f"/v1/archives/{archive_id}/objects/{sha256}"


def manifest_url(archive_id: uuid.UUID) -> str:
    return f"/v1/archives/{archive_id}/manifest"


def reply_url(archive_id: uuid.UUID) -> str:
    return f"/v1/archives/{archive_id}/reply"


Describe = Callable[[Sequence[DepositedObject], Parties], TransferDescription]


class ArchiveService:
    def __init__(
        self,
        repository: ArchiveRepository,
        store: ObjectStore,
        *,
        archival_agency: str = DEFAULT_ARCHIVAL_AGENCY,
        rules: RuleSource | None = None,
        journal: DepositJournal | None = None,
    ) -> None:
        self.repository = repository
        self.deposits = DepositRepository(repository.session)
        self.store = store
        self.archival_agency = archival_agency
        self.rules = rules or DefaultRules()
        self.journal = journal or Logbook()

    async def already_deposited(self, source_event_id: str) -> Archive | None:
        return await self.repository.find_by_source_event(source_event_id)

    async def source_deposited(self, source_key: str) -> Archive | None:
        """The archive already made from this acte, flow or transfer, whatever the event."""
        return await self.deposits.find_by_source_key(source_key)

    async def deposit_acte(
        self,
        acte: ActeAcknowledged,
        source: CloudEvent,
        documents: Sequence[FetchedDocument],
    ) -> Deposit | None:
        """Store the acte's checked documents and record one archive for the acte.

        ``None`` when an archive already exists for this event or this acte: another
        consumer got there first. The objects are stored before the rows: they are
        addressed by content, so a retry after a crash stores the same objects again,
        harmlessly.
        """
        archive = Archive(
            id=new_id(),
            siren=acte.siren,
            source_event_id=source.id,
            source_event_type=source.type,
            source_kind="acte",
            source_key=acte_key(acte.acte_id),
            acte_id=acte.acte_id,
            identifiant_acte=acte.identifiant_acte,
            title=acte.objet,
            nature=acte.nature,
            matiere=acte.matiere,
            date_decision=acte.date_decision,
            originating_agency=acte.siren,
            deposited_at=datetime.now(UTC),
        )
        rules = self.rules.rules_for(acte_kind(acte.nature))

        def describe(objects: Sequence[DepositedObject], parties: Parties) -> TransferDescription:
            return acte_transfer(acte, objects, rules, parties)

        return await self._deposit_documents(archive, documents, describe)

    async def deposit_pes_flow(
        self,
        flow: PesFlowAcknowledged,
        source: CloudEvent,
        documents: Sequence[FetchedDocument],
    ) -> Deposit | None:
        """Store an acknowledged PES flow and its PES_ACQUIT as one archive of the flow."""
        archive = Archive(
            id=new_id(),
            siren=flow.siren,
            source_event_id=source.id,
            source_event_type=source.type,
            source_kind="pes_flow",
            source_key=pes_flow_key(flow.flow_id),
            pes_flow_id=flow.flow_id,
            title=f"Flux comptable PES V2 {flow.nom_fic}",
            originating_agency=flow.siren,
            deposited_at=datetime.now(UTC),
        )
        rules = self.rules.rules_for(PES_FLOW_KIND)

        def describe(objects: Sequence[DepositedObject], parties: Parties) -> TransferDescription:
            return pes_transfer(flow, objects, rules, parties)

        return await self._deposit_documents(archive, documents, describe)

    async def _deposit_documents(
        self, archive: Archive, documents: Sequence[FetchedDocument], describe: Describe
    ) -> Deposit | None:
        objects = [
            await self._store(archive.id, position, item) for position, item in enumerate(documents)
        ]
        parties = Parties(
            message_identifier=f"KANOL-{archive.id}",
            date=archive.deposited_at,
            archival_agency=self.archival_agency,
            siren=archive.siren,
        )
        manifest = manifest_bytes(describe(_described(objects), parties), DEPOSIT_SEDA_VERSION)
        reply = TransferReply(
            message_identifier=f"ATR-{archive.id}",
            date=archive.deposited_at,
            request_identifier=parties.message_identifier,
            code=ReplyCode.OK,
            events=tuple(checks_passed((CHECK_SEDA, CHECK_DIGEST, STORAGE), archive.deposited_at)),
            archival_agency=self.archival_agency,
            transferring_agency=archive.siren,
            grant_date=archive.deposited_at,
        )
        return await self.record_deposit(archive, objects, manifest, reply, DEPOSIT_SEDA_VERSION)

    async def record_deposit(
        self,
        archive: Archive,
        objects: Sequence[ArchiveObject],
        manifest: bytes,
        reply: TransferReply,
        version: SedaVersion,
    ) -> Deposit | None:
        """Store the manifest and the ATR, then write the archive and its objects.

        ``None`` when an archive already exists for the same event or source.
        """
        reply_xml = reply_bytes(reply, version)
        archive.seda_version = version.value
        archive.message_identifier = reply.request_identifier
        archive.reply_identifier = reply.message_identifier
        session = self.repository.session
        stored_manifest, stored_reply = await put_held(session, self.store, manifest, reply_xml)
        archive.manifest_sha256, archive.reply_sha256 = stored_manifest.sha256, stored_reply.sha256

        if not await self.deposits.add_if_new(archive):
            log.info(
                "archive.already_deposited",
                source_event_id=archive.source_event_id,
                source_key=archive.source_key,
                tenant=archive.siren,
            )
            return None

        self.repository.add_objects(objects)
        await self.journal.record(
            self.repository.session,
            operation=DEPOSITED,
            outcome="OK",
            tenant=archive.siren,
            archive_id=str(archive.id),
            detail={
                "source_kind": archive.source_kind,
                "source_key": archive.source_key,
                "message_identifier": archive.message_identifier,
                "reply_identifier": archive.reply_identifier,
                "manifest_sha256": archive.manifest_sha256,
                "reply_sha256": archive.reply_sha256,
                "objects": [item.sha512 for item in objects],
            },
        )
        log.info(
            "archive.deposited",
            archive_id=str(archive.id),
            tenant=archive.siren,
            source_kind=archive.source_kind,
            acte_id=archive.acte_id,
            pes_flow_id=archive.pes_flow_id,
            objects=len(objects),
        )
        return Deposit(archive, list(objects), reply_xml)

    async def _store(
        self, archive_id: uuid.UUID, position: int, document: FetchedDocument
    ) -> ArchiveObject:
        await hold(self.repository.session, document.ref.sha256)
        stored = await self.store.put_file(document.file)
        if stored.sha256 != document.ref.sha256:
            raise FingerprintMismatch(f"{document.ref.filename}: stored as {stored.sha256}")
        return ArchiveObject(
            id=new_id(),
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

    async def get_archive(self, archive_id: uuid.UUID, siren: str) -> ArchiveDetail:
        archive = await self._archive_of(archive_id, siren)
        objects = await self.repository.objects_of(archive.id)
        return ArchiveDetail(
            **ArchivePublic.model_validate(archive, from_attributes=True).model_dump(),
            objects=[_public_object(archive.id, item) for item in objects],
        )

    async def seda_document(self, archive_id: uuid.UUID, siren: str, which: str) -> bytes:
        """The archive's SEDA manifest (``which="manifest"``) or its ATR (``"reply"``)."""
        archive = await self._archive_of(archive_id, siren)
        sha256 = archive.manifest_sha256 if which == "manifest" else archive.reply_sha256
        if sha256 is None:
            raise SedaDocumentNotFound(f"Archive {archive_id} was deposited before SEDA.")
        return await self.store.get(sha256)

    async def transfer_reply(self, siren: str, message_identifier: str) -> tuple[uuid.UUID, bytes]:
        """The archive and ATR of the organisation's transfer with this MessageIdentifier."""
        archive = await self.deposits.find_by_source_key(transfer_key(siren, message_identifier))
        if archive is None or archive.reply_sha256 is None:
            raise SedaDocumentNotFound(f"No accepted transfer {message_identifier}.")
        return archive.id, await self.store.get(archive.reply_sha256)

    async def _archive_of(self, archive_id: uuid.UUID, siren: str) -> Archive:
        # Another organisation's archive answers exactly like a missing one.
        archive = await self.repository.get_for_organisation(archive_id, siren)
        if archive is None:
            raise ArchiveNotFound(f"No archive {archive_id}.")
        return archive


def _described(objects: Sequence[ArchiveObject]) -> list[DepositedObject]:
    return [
        DepositedObject(
            role=item.role,
            filename=item.filename,
            media_type=item.media_type,
            size=item.size,
            sha512=item.sha512,
        )
        for item in objects
    ]


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
