"""SEDA transfers from the authorities' software, and the SEDA documents of every archive.

``POST /v1/transfers`` takes a SEDA 2.1 or 2.2 ``ArchiveTransfer`` with its files (a ZIP of
``manifest.xml`` and the files, or multipart parts) and answers with the
``ArchiveTransferReply`` (ATR): 201 and OK once every object is checked and stored, 422
and KO with every reason otherwise. The body is spooled to disk as it arrives and every
file is read as a stream, so a large package never sits in memory. A refused transfer
leaves nothing behind but its entry in the logbook and a ``TransferRejected`` event. With
``Prefer: respond-async`` a ZIP is answered 202 at once and checked afterwards
(:mod:`kanol_archive.pending`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Final

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import UploadFile
from starlette.types import Message

from kanol_archive import pending
from kanol_archive.logbook import Logbook
from kanol_archive.models import Archive, ArchiveObject
from kanol_archive.repository import ArchiveRepository
from kanol_archive.seda.ingest import ExpectedAgencies, IngestReport, check_transfer
from kanol_archive.seda.journal import (
    SEDA_DOCUMENT_DOWNLOADED,
    TRANSFER_REFUSED,
    DepositJournal,
)
from kanol_archive.seda.package import (
    MANIFEST_NAME,
    Package,
    PackageFile,
    PackageLimits,
    PackageRefused,
    open_zip,
)
from kanol_archive.seda.reader import (
    ManifestRefused,
    ReceivedTransfer,
    read_transfer,
    safe_package_path,
)
from kanol_archive.seda.reply import (
    CHECK_CONTAINER,
    STORAGE,
    ReplyCode,
    ReplyEvent,
    TransferReply,
    reply_bytes,
)
from kanol_archive.seda.repository import transfer_key
from kanol_archive.seda.rules import RuleSource
from kanol_archive.seda.schema import MAX_MANIFEST_BYTES, SedaVersion
from kanol_archive.service import ArchiveService, SedaDocumentNotFound, new_id
from kanol_archive.settings import ArchiveSettings
from kanol_common import outbox
from kanol_common.auth import Caller, require_scopes
from kanol_common.errors import Conflict, PayloadTooLarge, UnsupportedMediaType
from kanol_common.events.archive import TransferRejected
from kanol_common.holds import hold
from kanol_common.idempotency import (
    IdempotencyKey,
    commit_or_replay,
    remember,
    replay,
    request_fingerprint,
    scope_of,
)
from kanol_common.logging import get_logger
from kanol_common.organisations import get_organisation, require_subscription
from kanol_common.runtime import DatabaseSession
from kanol_common.storage import ObjectStore

log = get_logger(__name__)

WRITE_SCOPE: Final = "archive:write"
READ_SCOPE: Final = "archive:read"
XML_MEDIA_TYPE: Final = "application/xml"
ZIP_MEDIA_TYPES: Final = frozenset(
    {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
)
MULTIPART_MEDIA_TYPE: Final = "multipart/form-data"
MANIFEST_PART: Final = "manifest"
MAX_MESSAGE_IDENTIFIER: Final = 255
# Room for the multipart framing and the manifest around the files.
MULTIPART_ALLOWANCE: Final = MAX_MANIFEST_BYTES + 1024 * 1024
UNKNOWN_REQUEST: Final = "inconnu"

router = APIRouter(tags=["transfers"])


class TransferTooLarge(PayloadTooLarge):
    type_slug = "transfer-too-large"
    title = "Transfer too large"


class TransferMediaTypeUnsupported(UnsupportedMediaType):
    type_slug = "transfer-media-type-unsupported"
    title = "Unsupported transfer format"


class MessageIdentifierReused(Conflict):
    type_slug = "message-identifier-reused"
    title = "MessageIdentifier already used"


@dataclass(frozen=True)
class TransferOutcome:
    status: int
    reply: bytes
    archive_id: uuid.UUID | None = None


class TransferService:
    """Checks a received package and deposits it, or refuses it with every reason."""

    def __init__(
        self,
        session: AsyncSession,
        store: ObjectStore,
        settings: ArchiveSettings,
        *,
        journal: DepositJournal | None = None,
        rules: RuleSource | None = None,
    ) -> None:
        self.session = session
        self.store = store
        self.settings = settings
        self.journal = journal or Logbook()
        self.archives = ArchiveService(
            ArchiveRepository(session),
            store,
            archival_agency=settings.archival_agency_identifier,
            rules=rules,
            journal=self.journal,
        )

    async def ingest(self, package: Package, caller: Caller) -> TransferOutcome:
        now = datetime.now(UTC)
        try:
            transfer = await anyio.to_thread.run_sync(read_transfer, package.manifest)
        except ManifestRefused as exc:
            events = [
                ReplyEvent(exc.type_code, ReplyCode.KO, now, reason) for reason in exc.reasons
            ]
            return await self.refuse(
                caller,
                version=exc.version or SedaVersion.V2_1,
                request_identifier=exc.message_identifier,
                events=events,
            )
        if len(transfer.message_identifier) > MAX_MESSAGE_IDENTIFIER:
            return await self.refuse(
                caller,
                version=transfer.version,
                request_identifier=transfer.message_identifier[:MAX_MESSAGE_IDENTIFIER],
                events=[
                    ReplyEvent(
                        "CHECK_HEADER",
                        ReplyCode.KO,
                        now,
                        f"MessageIdentifier is longer than {MAX_MESSAGE_IDENTIFIER} characters",
                    )
                ],
            )

        existing = await self.archives.source_deposited(
            transfer_key(caller.siren, transfer.message_identifier)
        )
        if existing is not None:
            return await self._replay(existing, package.manifest)

        expected = ExpectedAgencies(
            self.settings.archival_agency_identifier,
            caller.siren,
            await self._organisations(transfer),
        )
        report = await anyio.to_thread.run_sync(check_transfer, transfer, package, expected, now)
        if not report.ok:
            return await self.refuse(
                caller,
                version=transfer.version,
                request_identifier=transfer.message_identifier,
                events=report.events,
            )
        return await self._deposit(transfer, package, report, caller)

    async def _organisations(self, transfer: ReceivedTransfer) -> dict[str, str | None]:
        """The organisations the manifest names that the platform knows, with their EPCI."""
        named = {
            siren
            for siren in (
                transfer.transferring_agency,
                transfer.originating_agency,
                transfer.submission_agency,
            )
            if siren
        }
        known: dict[str, str | None] = {}
        for siren in sorted(named):
            organisation = await get_organisation(self.session, siren)
            if organisation is not None and organisation.name is not None:
                known[siren] = organisation.parent_siren
        return known

    async def refuse(
        self,
        caller: Caller,
        *,
        version: SedaVersion,
        request_identifier: str | None,
        events: list[ReplyEvent],
    ) -> TransferOutcome:
        """The ATR KO; the refusal goes to the logbook and archive.events, nothing else stays."""
        now = datetime.now(UTC)
        reply = TransferReply(
            message_identifier=f"ATR-{new_id()}",
            date=now,
            request_identifier=request_identifier or UNKNOWN_REQUEST,
            code=ReplyCode.KO,
            events=tuple(events),
            archival_agency=self.settings.archival_agency_identifier,
            transferring_agency=caller.siren,
        )
        reply_xml = reply_bytes(reply, version)
        await self.journal.record(
            self.session,
            operation=TRANSFER_REFUSED,
            outcome="KO",
            tenant=caller.siren,
            archive_id=None,
            detail={
                "message_identifier": request_identifier,
                "reply_identifier": reply.message_identifier,
                "reasons": reply.reasons,
            },
            actor=caller.client_id,
        )
        outbox.publish(
            self.session,
            TransferRejected(
                siren=caller.siren,
                client_id=caller.client_id,
                message_identifier=request_identifier,
                reply_identifier=reply.message_identifier,
                seda_version=version.value,
                reasons=tuple(reply.reasons),
                rejected_at=now,
            ),
            subject=reply.message_identifier,
            tenant=caller.siren,
        )
        log.info(
            "transfer.rejected",
            tenant=caller.siren,
            message_identifier=request_identifier,
            reasons=len(reply.reasons),
        )
        return TransferOutcome(422, reply_xml)

    async def _replay(self, existing: Archive, manifest: bytes) -> TransferOutcome:
        # The same transfer sent again (a retry after a lost answer) gets the same ATR; the
        # same MessageIdentifier on another manifest is the sender's mistake.
        same_manifest = existing.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
        if not same_manifest or existing.reply_sha256 is None:
            raise MessageIdentifierReused(
                f"MessageIdentifier {existing.message_identifier} was already used for "
                f"archive {existing.id}, with another manifest."
            )
        reply = await self.store.get(existing.reply_sha256)
        return TransferOutcome(200, reply, existing.id)

    async def _deposit(
        self, transfer: ReceivedTransfer, package: Package, report: IngestReport, caller: Caller
    ) -> TransferOutcome:
        # TODO: the AppraisalRule and AccessRule the sender wrote in its manifest are kept in
        # the manifest only: retention applies the archive's rule for every API transfer
        # (kind "transfer"), so a sender cannot yet ask for a shorter or longer term.
        archive = Archive(
            id=new_id(),
            siren=caller.siren,
            source_event_id=f"transfer-{uuid.uuid4()}",
            source_event_type="fr.kanol.archive.transfer",
            source_kind="transfer",
            source_key=transfer_key(caller.siren, transfer.message_identifier),
            title=transfer.title,
            date_decision=transfer.start_date,
            originating_agency=transfer.originating_agency or caller.siren,
            deposited_at=datetime.now(UTC),
        )
        objects = []
        await hold(self.session, *(checked.sha256 for checked in report.objects))
        for position, checked in enumerate(report.objects):
            with checked.file.open() as stream:
                stored = await self.store.put_file(stream)
            if stored.sha256 != checked.sha256:
                raise RuntimeError(f"{checked.file.path} changed between its check and its storage")
            objects.append(
                ArchiveObject(
                    id=new_id(),
                    archive_id=archive.id,
                    position=position,
                    role=checked.announced.id[:64],
                    filename=checked.announced.filename[:255],
                    media_type=checked.announced.media_type[:255],
                    size=stored.size,
                    sha256=stored.sha256,
                    sha512=stored.sha512,
                    storage_key=stored.sha256,
                )
            )

        reply = TransferReply(
            message_identifier=f"ATR-{archive.id}",
            date=archive.deposited_at,
            request_identifier=transfer.message_identifier,
            code=ReplyCode.OK,
            events=(
                *report.events,
                ReplyEvent(STORAGE, ReplyCode.OK, archive.deposited_at),
            ),
            archival_agency=self.settings.archival_agency_identifier,
            transferring_agency=caller.siren,
            grant_date=archive.deposited_at,
        )
        deposit = await self.archives.record_deposit(
            archive, objects, package.manifest, reply, transfer.version
        )
        if deposit is None:
            # Another request with the same MessageIdentifier won the race.
            existing = await self.archives.source_deposited(archive.source_key or "")
            if existing is None:
                raise RuntimeError("a transfer lost a race to an archive that does not exist")
            return await self._replay(existing, package.manifest)

        outbox.publish(
            self.session,
            deposit.deposited_event(),
            subject=str(archive.id),
            tenant=archive.siren,
        )
        return TransferOutcome(201, deposit.reply, archive.id)


# -- receiving the body --------------------------------------------------------------------


def _limits(settings: ArchiveSettings) -> PackageLimits:
    return PackageLimits(
        max_files=settings.transfer_max_files,
        max_unpacked_bytes=settings.transfer_max_unpacked_bytes,
        max_compression_ratio=settings.transfer_max_compression_ratio,
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_announced_length(request: Request, max_bytes: int) -> None:
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > max_bytes:
        raise TransferTooLarge(f"The transfer is larger than the {max_bytes} bytes accepted.")


async def _spool_body(request: Request, target: Path, max_bytes: int) -> str:
    """Write the body to ``target`` chunk by chunk; its SHA-256, hex."""
    received = 0
    digest = hashlib.sha256()
    async with await anyio.open_file(target, "wb") as file:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise TransferTooLarge(
                    f"The transfer is larger than the {max_bytes} bytes accepted."
                )
            digest.update(chunk)
            await file.write(chunk)
    return digest.hexdigest()


def _limited_request(request: Request, max_bytes: int) -> Request:
    """The same request, whose body stops with TransferTooLarge past ``max_bytes``."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise TransferTooLarge(
                    f"The transfer is larger than the {max_bytes} bytes accepted."
                )
        return message

    return Request(request.scope, receive)


def _upload_opener(upload: UploadFile) -> Any:
    def opener() -> IO[bytes]:
        upload.file.seek(0)
        return upload.file

    return opener


async def _multipart_package(form: Mapping[str, Any], uploads: list[tuple[str, Any]]) -> Package:
    manifest_part = form.get(MANIFEST_PART)
    if isinstance(manifest_part, UploadFile):
        manifest = await manifest_part.read(MAX_MANIFEST_BYTES + 1)
    elif isinstance(manifest_part, str):
        manifest = manifest_part.encode("utf-8")
    else:
        raise PackageRefused(f"the multipart body has no '{MANIFEST_PART}' part")

    files: dict[str, PackageFile] = {}
    reasons: list[str] = []
    for name, value in uploads:
        if name == MANIFEST_PART or not isinstance(value, UploadFile):
            continue
        try:
            path = safe_package_path(value.filename or "")
        except ValueError as exc:
            reasons.append(f"part '{name}': {exc}")
            continue
        if path in files:
            reasons.append(f"two parts carry the file {path}")
            continue
        files[path] = PackageFile(path, value.size or 0, _upload_opener(value), owned=False)
    if reasons:
        raise PackageRefused(reasons)
    return Package(manifest=manifest, files=files, container="multipart")


def _journal(request: Request) -> DepositJournal | None:
    # The logbook, when the app has one; the log-line journal otherwise.
    journal: DepositJournal | None = getattr(request.app.state, "logbook", None)
    return journal


def _rules(request: Request) -> RuleSource | None:
    rules: RuleSource | None = getattr(request.app.state, "retention_rules", None)
    return rules


def _service(request: Request, session: DatabaseSession) -> TransferService:
    state = request.app.state
    return TransferService(
        session,
        state.object_store,
        state.settings,
        journal=_journal(request),
        rules=_rules(request),
    )


# A transfer needs the organisation's subscription to archive (or its EPCI's): 403 otherwise.
Submitter = Annotated[Caller, Depends(require_subscription("archive", WRITE_SCOPE))]
Reader = Annotated[Caller, Depends(require_scopes(READ_SCOPE))]
Transfers = Annotated[TransferService, Depends(_service)]

_ATR_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    201: {"description": "ATR OK: the transfer is archived", "content": {XML_MEDIA_TYPE: {}}},
    200: {
        "description": "ATR OK of the same transfer, sent again",
        "content": {XML_MEDIA_TYPE: {}},
    },
    422: {"description": "ATR KO with every reason", "content": {XML_MEDIA_TYPE: {}}},
}


@router.post(
    "/v1/transfers",
    summary="Transfer a SEDA 2.1 or 2.2 package to the archive",
    response_class=Response,
    responses=_ATR_RESPONSE,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                MULTIPART_MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "required": [MANIFEST_PART],
                        "properties": {
                            MANIFEST_PART: {"type": "string", "format": "binary"},
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                        },
                    }
                },
            },
        }
    },
    description=(
        "Body: a ZIP (`application/zip`) of `manifest.xml` and the files its "
        "`BinaryDataObject/Uri` name, or `multipart/form-data` with a `manifest` file part "
        "and one file part per object whose filename is the object's `Uri`. The answer is "
        "the `ArchiveTransferReply`: 201 OK, or 422 KO with one event per reason."
    ),
)
async def submit_transfer(
    request: Request,
    caller: Submitter,
    transfers: Transfers,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    settings: ArchiveSettings = request.app.state.settings
    media_type = _media_type(request)
    if media_type not in ZIP_MEDIA_TYPES and media_type != MULTIPART_MEDIA_TYPE:
        raise TransferMediaTypeUnsupported(
            "Send a ZIP (application/zip) or multipart/form-data with a 'manifest' part."
        )
    _check_announced_length(request, settings.transfer_max_bytes)
    if media_type in ZIP_MEDIA_TYPES and pending.prefers_async(request):
        return await _accept_async(request, caller, transfers, idempotency_key)

    spool_dir = settings.spool_dir()
    spool_dir.mkdir(parents=True, exist_ok=True)
    session = transfers.session
    scope = scope_of(caller.siren, caller.client_id)
    async with AsyncExitStack() as stack:
        spool = Path(await anyio.to_thread.run_sync(_new_spool, spool_dir))
        # Removed last (the stack unwinds in reverse), after the ZIP and the parts are
        # closed; in a worker thread, since a spooled package may weigh gigabytes.
        stack.push_async_callback(anyio.to_thread.run_sync, _remove_spool, spool)
        try:
            received = await _receive(request, settings, spool, stack)
        except TransferTooLarge:
            await transfers.journal.record(
                session,
                operation=TRANSFER_REFUSED,
                outcome="KO",
                tenant=caller.siren,
                archive_id=None,
                detail={"reasons": [f"larger than {settings.transfer_max_bytes} bytes"]},
                actor=caller.client_id,
            )
            await session.commit()
            raise

        replayed = await replay(session, scope, idempotency_key, received.fingerprint)
        if replayed is not None:
            return replayed
        if received.package is None:
            outcome = await _refuse_container(transfers, caller, received.refusals)
        else:
            outcome = await transfers.ingest(received.package, caller)

    headers = {"Location": f"/v1/archives/{outcome.archive_id}"} if outcome.archive_id else None
    response = Response(
        outcome.reply, status_code=outcome.status, media_type=XML_MEDIA_TYPE, headers=headers
    )
    remember(session, scope, idempotency_key, received.fingerprint, response)
    return await commit_or_replay(session, scope, idempotency_key, received.fingerprint, response)


async def _accept_async(
    request: Request,
    caller: Caller,
    transfers: TransferService,
    idempotency_key: str | None,
) -> Response:
    """Spool the ZIP into the object store, record it pending and answer 202; a worker on
    any replica checks it later."""
    settings = transfers.settings
    spool_dir = settings.spool_dir()
    spool_dir.mkdir(parents=True, exist_ok=True)
    spool = Path(await anyio.to_thread.run_sync(_new_spool, spool_dir))
    try:
        body = spool / pending.PACKAGE_NAME
        fingerprint = await _spool_body(request, body, settings.transfer_max_bytes)
        session = transfers.session
        scope = scope_of(caller.siren, caller.client_id)
        replayed = await replay(session, scope, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed
        await hold(session, fingerprint)
        with body.open("rb") as file:
            stored = await transfers.store.put_file(file)
    finally:
        await anyio.to_thread.run_sync(_remove_spool, spool)

    row = await pending.record(session, caller, stored.sha256, datetime.now(UTC))
    response = pending.accepted_response(row)
    remember(session, scope, idempotency_key, fingerprint, response)
    response = await commit_or_replay(session, scope, idempotency_key, fingerprint, response)
    worker: pending.PendingTransfers | None = getattr(request.app.state, "pending_transfers", None)
    if worker is not None:
        worker.wake()
    return response


def package_check(
    store: ObjectStore,
    settings: ArchiveSettings,
    *,
    journal: DepositJournal | None = None,
    rules: RuleSource | None = None,
) -> pending.PackageCheck:
    """What the pending transfers' worker runs on each spooled ZIP: the synchronous path."""

    async def check(session: AsyncSession, path: Path, caller: Caller) -> pending.Checked:
        transfers = TransferService(session, store, settings, journal=journal, rules=rules)
        async with AsyncExitStack() as stack:
            try:
                archive = stack.enter_context(zipfile.ZipFile(path))
                package = open_zip(archive, _limits(settings))
            except PackageRefused as exc:
                outcome = await _refuse_container(transfers, caller, exc.reasons)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError) as e:
                reason = f"the body is not a usable ZIP: {e}"
                outcome = await _refuse_container(transfers, caller, [reason])
            except FileNotFoundError:
                reason = "the package was lost before it could be checked: send it again"
                outcome = await _refuse_container(transfers, caller, [reason])
            else:
                outcome = await transfers.ingest(package, caller)
        return pending.Checked(outcome.status, outcome.reply, outcome.archive_id)

    return check


def _new_spool(spool_dir: Path) -> str:
    return tempfile.mkdtemp(dir=spool_dir, prefix="transfer-")


def _remove_spool(spool: Path) -> None:
    shutil.rmtree(spool, ignore_errors=True)


@dataclass
class _Received:
    """The body, spooled: a package to check, or why its container cannot be read."""

    fingerprint: str
    package: Package | None = None
    refusals: list[str] = field(default_factory=list)


async def _receive(
    request: Request, settings: ArchiveSettings, spool: Path, stack: AsyncExitStack
) -> _Received:
    """Spool the body and open it as a package; what is opened closes with ``stack``."""
    limits = _limits(settings)
    if _media_type(request) == MULTIPART_MEDIA_TYPE:
        limited = _limited_request(request, settings.transfer_max_bytes)
        form = await stack.enter_async_context(
            limited.form(
                max_files=limits.max_files + 1,
                max_fields=limits.max_files + 1,
                max_part_size=MULTIPART_ALLOWANCE,
            )
        )
        try:
            package = await _multipart_package(form, list(form.multi_items()))
        except PackageRefused as exc:
            return _Received(request_fingerprint(*exc.reasons), refusals=exc.reasons)
        # The boundary changes with every send: the same content is the same request.
        parts = [f"{path}:{item.size}" for path, item in sorted(package.files.items())]
        return _Received(request_fingerprint(package.manifest, *parts), package=package)

    body = spool / "package.zip"
    fingerprint = await _spool_body(request, body, settings.transfer_max_bytes)
    try:
        archive = stack.enter_context(zipfile.ZipFile(body))
        return _Received(fingerprint, package=open_zip(archive, limits))
    except PackageRefused as exc:
        return _Received(fingerprint, refusals=exc.reasons)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError) as exc:
        return _Received(fingerprint, refusals=[f"the body is not a usable ZIP: {exc}"])


async def _refuse_container(
    transfers: TransferService, caller: Caller, reasons: list[str]
) -> TransferOutcome:
    # No manifest could be read: the ATR KO names no request and speaks SEDA 2.1.
    now = datetime.now(UTC)
    return await transfers.refuse(
        caller,
        version=SedaVersion.V2_1,
        request_identifier=None,
        events=[ReplyEvent(CHECK_CONTAINER, ReplyCode.KO, now, reason) for reason in reasons],
    )


# -- the SEDA documents of an archive ------------------------------------------------------


def _archives(request: Request, session: DatabaseSession) -> ArchiveService:
    settings: ArchiveSettings = request.app.state.settings
    return ArchiveService(
        ArchiveRepository(session),
        request.app.state.object_store,
        archival_agency=settings.archival_agency_identifier,
        rules=_rules(request),
        journal=_journal(request),
    )


Archives = Annotated[ArchiveService, Depends(_archives)]
MessageIdentifier = Annotated[str, PathParam(min_length=1, max_length=MAX_MESSAGE_IDENTIFIER)]
_XML_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {200: {"content": {XML_MEDIA_TYPE: {}}}}


@router.get(
    "/v1/archives/{archive_id}/manifest",
    summary="The archive's SEDA ArchiveTransfer manifest",
    response_class=Response,
    responses=_XML_RESPONSE,
)
async def get_manifest(archive_id: uuid.UUID, caller: Reader, archives: Archives) -> Response:
    content = await archives.seda_document(archive_id, caller.siren, "manifest")
    await _downloaded(archives, caller, archive_id, "manifest")
    return _xml(content, f"{archive_id}-manifest.xml")


@router.get(
    "/v1/archives/{archive_id}/reply",
    summary="The archive's ArchiveTransferReply (ATR), its proof of deposit",
    response_class=Response,
    responses=_XML_RESPONSE,
)
async def get_reply(archive_id: uuid.UUID, caller: Reader, archives: Archives) -> Response:
    content = await archives.seda_document(archive_id, caller.siren, "reply")
    await _downloaded(archives, caller, archive_id, "reply")
    return _xml(content, f"{archive_id}-atr.xml")


@router.get(
    "/v1/transfers/{message_identifier}/reply",
    summary="The ATR of an accepted transfer, by the transfer's MessageIdentifier",
    response_class=Response,
    responses=_XML_RESPONSE,
)
async def get_transfer_reply(
    message_identifier: MessageIdentifier, caller: Reader, archives: Archives
) -> Response:
    archive_id, content = await archives.transfer_reply(caller.siren, message_identifier)
    await _downloaded(archives, caller, archive_id, "reply")
    return _xml(content, "atr.xml")


async def _downloaded(
    archives: ArchiveService, caller: Caller, archive_id: uuid.UUID, which: str
) -> None:
    # Who read which proof of deposit is part of the archive's record, committed with it.
    session = archives.repository.session
    await archives.journal.record(
        session,
        operation=SEDA_DOCUMENT_DOWNLOADED,
        outcome="OK",
        tenant=caller.siren,
        archive_id=str(archive_id),
        detail={"which": which},
        actor=caller.client_id,
    )
    await session.commit()


def _xml(content: bytes, filename: str) -> Response:
    return Response(
        content,
        media_type=XML_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


__all__ = ["MANIFEST_NAME", "SedaDocumentNotFound", "TransferService", "router"]
