"""Sending actes to the prefecture and reading its replies: two background tasks.

The transmitter picks actes waiting for transmission (woken by each submission, polling
as a fallback), claims each one, builds and stores its transmission, sends it, and
records it transmitted. The guard against sending an acte twice:

1. the claim is a compare-and-set on the acte's state (``waiting_for_transmission`` ->
   ``transmitting``) committed before anything is sent: of two replicas, one wins;
2. the claim gives the transmission an id; the gateway knows the transmission by the
   idempotency key ``{identifiant_acte}/{transmission_id}`` and never takes a key twice;
3. an acte found ``transmitting`` (a crash between the send and its record, or a send
   whose answer was lost) is recovered by asking the gateway whether it has that key:
   if so the acte is recorded transmitted, else the same archive is sent again under
   the same key. Only a definite refusal by the gateway lets a later claim use a new key.

The receiver long-polls the gateway's return messages and moves actes to
``acknowledged`` (ARActe, 1-2) or ``refused`` (anomalie, 1-3), in one transaction with the
stored reply, the event and the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import anyio
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import replies, repository, service, stamp
from kanol_actes_pes.acte import ActeState, Matiere, Nature
from kanol_actes_pes.models import Acte, ActeDocument, DocumentRole
from kanol_actes_pes.monitor import ACTES_WAITING_FOR_CAPACITY
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import (
    ArchiveFile,
    GatewayBusy,
    GatewayUnavailable,
    PrefectureGateway,
    ReturnMessage,
    TransmissionArchive,
    TransmissionReceipt,
    TransmissionRejected,
)
from kanol_actes_pes.prefecture.transmission import (
    MEDIA_TYPE_ARCHIVE,
    MEDIA_TYPE_XML,
    ActeToTransmit,
    build_archive,
    idempotency_key,
)
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.db import Database, as_utc
from kanol_common.holds import put_held
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore
from kanol_common.wakeup import Wakeup

log = get_logger(__name__)

AfterSend = Callable[[Acte, TransmissionReceipt], Awaitable[None]]

TRANSMISSION_ROLES = (
    DocumentRole.ENVELOPPE,
    DocumentRole.MESSAGE,
    DocumentRole.ARCHIVE_TRANSMISSION,
)


@dataclass(frozen=True)
class _Claim:
    """A claimed acte and its stored transmission, or why the transmission cannot be built."""

    acte: Acte
    archive: TransmissionArchive | None
    error: actes_xml.ActesXmlError | None


@dataclass
class Transmitter:
    """Claims, sends and records transmissions; see the module's docstring for the guard.

    ``after_send`` runs once the gateway took a transmission and before it is recorded:
    fault-injection tests use it to kill the transmitter at the worst moment.
    """

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: PrefectureGateway
    after_send: AfterSend | None = None
    # Shared with the MessageSender of the process: one of them at a time reads the hourly
    # volume left and spends it, so that together they never pass the cap.
    volume_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._wakeup = Wakeup()
        # Whether the last turn left actes waiting because the hourly volume is used up.
        self.capacity_exhausted = False

    def wake(self) -> None:
        self._wakeup.ring()

    async def run(self) -> None:
        """Recover what a previous process left in flight, then transmit until cancelled."""
        await self._guarded(self.recover_all)
        while True:
            await self._guarded(self.run_once)
            await self._wakeup.wait(self.settings.transmit_poll_seconds)

    async def _guarded(self, step: Callable[[], Awaitable[int]]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database is away or a bug: the actes stay where they are, next turn retries.
            log.exception("transmitter.turn_failed")
            await asyncio.sleep(min(self.settings.transmit_poll_seconds, 1.0))

    async def run_once(self) -> int:
        """One turn: recover due ``transmitting`` actes, requeue failed ones, send the due."""
        now = service.now_utc()
        lease_cutoff = now - timedelta(seconds=self.settings.transmit_lease_seconds)
        async with self.database.session() as session:
            stale = await repository.transmitting_due(
                session, now, lease_cutoff, self.settings.transmit_batch_size
            )
        for acte_id in stale:
            await self.recover(acte_id)

        await self._requeue_failed(now)
        async with self.volume_lock:
            return await self._transmit_within_volume(now)

    async def _transmit_within_volume(self, now: datetime) -> int:
        """Send the due actes the hourly volume allows, oldest first."""
        async with self.database.session() as session:
            budget = await self._hourly_budget(session, now)
            due = await repository.waiting_for_transmission(
                session, now, min(self.settings.transmit_batch_size, budget + 1)
            )
            # Oldest first: what exceeds the volume waits in its place for the next turn.
            self.capacity_exhausted = len(due) > budget
            held = 0
            if self.capacity_exhausted:
                held = await repository.count_waiting_due(session, now) - budget
                log.warning("acte.hourly_volume_reached", budget=budget, held=held)
        ACTES_WAITING_FOR_CAPACITY.set(held)
        due = due[:budget]
        await self._transmit_concurrently(due)
        return len(due)

    async def _hourly_budget(self, session: AsyncSession, now: datetime) -> int:
        """How many more transmissions the last hour's volume allows."""
        sent = await repository.sent_since(session, now - timedelta(hours=1))
        return max(self.settings.prefecture_max_per_hour - sent, 0)

    async def _transmit_concurrently(self, acte_ids: Sequence[uuid.UUID]) -> None:
        """Send several actes at once: each waits mostly on the gateway, not on this process."""
        limit = asyncio.Semaphore(self.settings.transmit_concurrency)

        async def transmit_one(acte_id: uuid.UUID) -> None:
            async with limit:
                await self.transmit(acte_id)

        outcomes = await asyncio.gather(
            *(transmit_one(acte_id) for acte_id in acte_ids), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            # The others went on; the turn still fails as a whole, and recovery or the next
            # turn settles the actes left claimed or waiting.
            raise failures[0]

    async def recover_all(self) -> int:
        """Every acte left ``transmitting``: at start, nothing of this process is in flight."""
        async with self.database.session() as session:
            left = await repository.transmitting_since(session, None, 10_000)
        for acte_id in left:
            await self.recover(acte_id)
        return len(left)

    async def _requeue_failed(self, now: datetime) -> None:
        async with self.database.session() as session:
            failed = await repository.failed_due_for_retry(
                session, now, self.settings.transmit_batch_size
            )
            for acte_id in failed:
                acte = await repository.get_acte(session, acte_id)
                assert acte is not None
                with contextlib.suppress(service.StaleActe):
                    await service.change_state(
                        session,
                        acte,
                        ActeState.WAITING_FOR_TRANSMISSION,
                        reason="retry after a refused transmission",
                    )
            await session.commit()

    # -- one acte --------------------------------------------------------------------------

    async def transmit(self, acte_id: uuid.UUID) -> None:
        """Claim the acte if it still waits, with its transmission built, then send it."""
        claim = await self._claim(acte_id)
        if claim is None:
            return
        acte = claim.acte
        with service.in_trace_of(acte, "acte.transmit"):
            log.info("acte.claimed", acte_id=str(acte_id), tenant=acte.siren)
            if claim.archive is None:
                # A bug: Kanol built a document the schema refuses. Nothing was sent.
                log.error("acte.transmission_invalid", acte_id=str(acte_id), exc_info=claim.error)
                await self._fail(acte, f"the transmission does not validate: {claim.error}")
                return
            await self._send(acte, claim.archive)

    async def _claim(self, acte_id: uuid.UUID) -> _Claim | None:
        """Claim the acte and store its transmission in one transaction, before any send.

        One transaction rather than a claim then a build: the acte and its documents are
        read once, and the claim and the stored archive commit together.
        """
        async with self.database.session() as session:
            acte = await repository.get_acte(session, acte_id)
            if acte is None or acte.state != ActeState.WAITING_FOR_TRANSMISSION.value:
                return None
            try:
                change = await service.change_state(
                    session,
                    acte,
                    ActeState.TRANSMITTING,
                    reason="claimed for transmission",
                    transmission_id=uuid.uuid4().hex,
                    transmission_attempts=acte.transmission_attempts + 1,
                    next_attempt_at=None,
                    # A new claim: if this one gets stuck too, it is reported again.
                    transmission_stuck_at=None,
                )
            except service.StaleActe:
                await session.rollback()
                return None
            await session.flush()
            # A number no other transmission of the service has: the claim's history row.
            acte.transmission_number = change.id
            session.add(acte)
            documents = await self._documents_to_transmit(session, acte.id)
            try:
                archive = await self._build(acte, documents)
            except actes_xml.ActesXmlError as exc:
                # The claim commits alone; the caller records the failure on top of it.
                await session.commit()
                return _Claim(acte, None, exc)
            await self._store_transmission(session, acte, archive)
            await session.commit()
        return _Claim(acte, archive, None)

    async def _documents_to_transmit(
        self, session: AsyncSession, acte_id: uuid.UUID
    ) -> dict[str, ActeDocument]:
        """The acte's PDF and annexes; what an earlier, refused transmission stored is removed."""
        documents = {d.role: d for d in await repository.documents_of(session, acte_id)}
        if any(role.value in documents for role in TRANSMISSION_ROLES):
            await repository.delete_documents(session, acte_id, TRANSMISSION_ROLES)
        return documents

    async def recover(self, acte_id: uuid.UUID) -> None:
        """Settle an acte found ``transmitting``: record it if the gateway has it, else resend."""
        async with self.database.session() as session:
            acte = await repository.get_acte(session, acte_id)
        if acte is None or acte.state != ActeState.TRANSMITTING.value:
            return
        with service.in_trace_of(acte, "acte.recover"):
            await self._settle(acte)

    async def _settle(self, acte: Acte) -> None:
        acte_id = acte.id
        assert acte.transmission_id is not None
        key = idempotency_key(acte.identifiant_acte, acte.transmission_id)
        try:
            receipt = await self.gateway.has_transmission(key)
        except GatewayUnavailable as exc:
            await self._postpone(acte, str(exc))
            return
        if receipt is not None:
            log.info("acte.transmission_recovered", acte_id=str(acte_id), tenant=acte.siren)
            await self._record_transmitted(
                acte, receipt, "recovered: the prefecture already had this transmission"
            )
            return
        log.info("acte.transmission_resent", acte_id=str(acte_id), tenant=acte.siren)
        await self._resend(acte_id)

    async def _resend(self, acte_id: uuid.UUID) -> None:
        try:
            archive, acte = await self._archive_for(acte_id)
        except actes_xml.ActesXmlError as exc:
            # A bug: Kanol built a document the schema refuses. Nothing was sent.
            log.exception("acte.transmission_invalid", acte_id=str(acte_id))
            await self._fail_by_id(acte_id, f"the transmission does not validate: {exc}")
            return
        if archive is None or acte is None:
            return
        await self._send(acte, archive)

    async def _send(self, acte: Acte, archive: TransmissionArchive) -> None:
        try:
            receipt = await self.gateway.transmit(archive)
        except GatewayBusy as exc:
            await self._queue_again(acte, exc)
            return
        except TransmissionRejected as exc:
            await self._fail(acte, str(exc))
            return
        except GatewayUnavailable as exc:
            # The gateway may have taken it before the answer was lost: only recovery
            # (asking under the same key) may decide; never a new key here.
            await self._postpone(acte, str(exc))
            return

        if self.after_send is not None:
            await self.after_send(acte, receipt)
        await self._record_transmitted(acte, receipt, "the prefecture's gateway took it")

    async def _archive_for(
        self, acte_id: uuid.UUID
    ) -> tuple[TransmissionArchive | None, Acte | None]:
        """The transmission's archive: the one stored at the claim, else built and stored."""
        async with self.database.session() as session:
            acte = await repository.get_acte(session, acte_id)
            if acte is None or acte.state != ActeState.TRANSMITTING.value:
                return None, None
            documents = {d.role: d for d in await repository.documents_of(session, acte_id)}
            if DocumentRole.ARCHIVE_TRANSMISSION.value in documents:
                return await self._stored_archive(acte, documents), acte

            archive = await self._build(acte, documents)
            await self._store_transmission(session, acte, archive)
            await session.commit()
        return archive, acte

    async def _build(self, acte: Acte, documents: dict[str, ActeDocument]) -> TransmissionArchive:
        assert acte.transmission_id is not None and acte.transmission_number is not None
        settings = self.settings
        emetteur = emetteur_of(acte, settings)
        pdf = documents[DocumentRole.ACTE.value]
        annexes: list[tuple[str, bytes]] = []
        for annexe in _annexes_of(documents):
            annexes.append((annexe.type_piece or "", await self.store.get(annexe.sha256)))
        to_transmit = ActeToTransmit(
            identifiant_acte=acte.identifiant_acte,
            emetteur=emetteur,
            adresses_retour=(settings.adresse_retour,),
            date_decision=acte.date_decision,
            numero_interne=acte.numero_interne,
            nature=Nature(acte.nature),
            matiere=Matiere.parse(acte.matiere),
            objet=acte.objet,
            classification_date=acte.classification_date or settings.classification_date,
            document=await self.store.get(pdf.sha256),
            type_piece=acte.type_piece,
            annexes=tuple(annexes),
        )
        return build_archive(
            to_transmit,
            transmission_id=acte.transmission_id,
            number=acte.transmission_number,
            day=service.now_utc().date(),
        )

    async def _store_transmission(
        self, session: AsyncSession, acte: Acte, archive: TransmissionArchive
    ) -> None:
        files = {
            DocumentRole.ENVELOPPE: archive.enveloppe,
            DocumentRole.MESSAGE: archive.message,
            DocumentRole.ARCHIVE_TRANSMISSION: ArchiveFile(
                archive.filename, archive.content, MEDIA_TYPE_ARCHIVE
            ),
        }
        contents = [file.content for file in files.values()]
        stored_files = await put_held(session, self.store, *contents)
        for (role, file), stored in zip(files.items(), stored_files, strict=True):
            repository.add(
                session,
                ActeDocument(
                    acte_id=acte.id,
                    role=role.value,
                    filename=file.name,
                    media_type=file.media_type,
                    sha256=stored.sha256,
                    size=stored.size,
                    created_at=service.now_utc(),
                ),
            )

    async def _stored_archive(
        self, acte: Acte, documents: dict[str, ActeDocument]
    ) -> TransmissionArchive:
        assert acte.transmission_id is not None

        async def file(role: DocumentRole) -> ArchiveFile:
            document = documents[role.value]
            content = await self.store.get(document.sha256)
            return ArchiveFile(document.filename, content, document.media_type)

        archive = await file(DocumentRole.ARCHIVE_TRANSMISSION)
        return TransmissionArchive(
            idempotency_key=idempotency_key(acte.identifiant_acte, acte.transmission_id),
            identifiant_acte=acte.identifiant_acte,
            filename=archive.name,
            content=archive.content,
            enveloppe=await file(DocumentRole.ENVELOPPE),
            message=await file(DocumentRole.MESSAGE),
            documents=(
                await file(DocumentRole.ACTE),
                *[
                    ArchiveFile(a.filename, await self.store.get(a.sha256), a.media_type)
                    for a in _annexes_of(documents)
                ],
            ),
        )

    # -- outcomes --------------------------------------------------------------------------

    async def _record_transmitted(
        self, acte: Acte, receipt: TransmissionReceipt, reason: str
    ) -> None:
        """Record the send; ``acte`` as read before it, so the move is guarded by its state."""
        acte_id = acte.id
        async with self.database.session() as session:
            try:
                await service.change_state(
                    session,
                    acte,
                    ActeState.TRANSMITTED,
                    reason=reason,
                    transmitted_at=receipt.received_at,
                    prefecture_transmission_id=receipt.transmission_id,
                    next_attempt_at=None,
                    last_error=None,
                )
            except service.StaleActe:
                # The receiver got the prefecture's reply first and recorded it all.
                return
            service.publish_transmitted(session, acte)
            await session.commit()
        log.info(
            "acte.transmitted",
            acte_id=str(acte_id),
            tenant=acte.siren,
            identifiant=acte.identifiant_acte,
            transmission_id=receipt.transmission_id,
        )

    async def _queue_again(self, acte: Acte, busy: GatewayBusy) -> None:
        retry_at = service.now_utc() + timedelta(seconds=busy.retry_after)
        await self._move_unless_stale(
            acte,
            ActeState.WAITING_FOR_TRANSMISSION,
            reason=f"the gateway's hourly volume is reached: {busy}",
            next_attempt_at=retry_at,
        )
        log.warning("acte.transmission_deferred", acte_id=str(acte.id), retry_at=str(retry_at))

    async def _fail_by_id(self, acte_id: uuid.UUID, error: str) -> None:
        async with self.database.session() as session:
            acte = await repository.get_acte(session, acte_id)
        if acte is not None and acte.state == ActeState.TRANSMITTING.value:
            await self._fail(acte, error)

    async def _fail(self, acte: Acte, error: str) -> None:
        retry_at = None
        if acte.transmission_attempts < self.settings.transmit_max_attempts:
            retry_at = service.now_utc() + self._backoff(acte.transmission_attempts)
        await self._move_unless_stale(
            acte,
            ActeState.TRANSMISSION_FAILED,
            reason=f"refused by the gateway: {error}",
            last_error=error,
            next_attempt_at=retry_at,
        )
        log.error(
            "acte.transmission_failed",
            acte_id=str(acte.id),
            tenant=acte.siren,
            error=error,
            retry_at=str(retry_at) if retry_at else None,
        )

    async def _move_unless_stale(
        self, acte: Acte, target: ActeState, *, reason: str, **changes: object
    ) -> None:
        """Change the acte's state in a transaction of its own; if another task moved it
        first, that task's outcome stands."""
        async with self.database.session() as session:
            with contextlib.suppress(service.StaleActe):
                await service.change_state(session, acte, target, reason=reason, **changes)
                await session.commit()

    async def _postpone(self, acte: Acte, error: str) -> None:
        """Keep the acte ``transmitting`` and ask the gateway again after a backoff."""
        retry_at = service.now_utc() + self._backoff(acte.transmission_attempts)
        async with self.database.session() as session:
            await repository.postpone_transmitting(
                session, acte.id, error, retry_at, service.now_utc()
            )
            await session.commit()
        log.warning("acte.transmission_unsettled", acte_id=str(acte.id), error=error)

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self.settings.transmit_retry_base_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.settings.transmit_retry_max_seconds))


def emetteur_of(acte: Acte, settings: ActesPesSettings) -> actes_xml.Emetteur:
    """The acte's sender as its envelopes name it, with the codes it was submitted with."""
    arrondissement = settings.arrondissement if acte.arrondissement is None else acte.arrondissement
    return actes_xml.Emetteur(
        siren=acte.siren,
        departement=acte.departement,
        arrondissement=arrondissement,
        nature_collectivite=acte.nature_collectivite or settings.nature_collectivite,
    )


def _annexes_of(documents: dict[str, ActeDocument]) -> list[ActeDocument]:
    annexes = [d for role, d in documents.items() if role.startswith("annexe_")]
    return sorted(annexes, key=lambda d: d.position or 0)


CURSOR_NAME = "prefecture"
STALE_RETRIES = 3


@dataclass
class Receiver:
    """Reads the prefecture's return messages and records what they say about each acte."""

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: PrefectureGateway
    # Told the département whose classification changed, so a cache forgets it.
    on_classification: Callable[[str], None] | None = None
    # Told the département whose prefecture holds a newer classification than the acte
    # declared (its ARActe or anomalie says so), so a 7-1 asks for it.
    on_newer_classification: Callable[[str], None] | None = None

    def _check_classification(self, acte: Acte, en_cours: date) -> None:
        declared = acte.classification_date or self.settings.classification_date
        if en_cours > declared and self.on_newer_classification is not None:
            log.info(
                "classification.newer_announced",
                departement=acte.departement,
                declared=declared.isoformat(),
                en_cours=en_cours.isoformat(),
            )
            self.on_newer_classification(acte.departement)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.fetch_once(self.settings.prefecture_poll_wait_seconds)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except GatewayUnavailable as exc:
                log.warning("prefecture.unreachable", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:
                log.exception("receiver.turn_failed")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def fetch_once(self, wait_seconds: float) -> int:
        async with self.database.session() as session:
            cursor = await repository.read_cursor(session, CURSOR_NAME)
        messages = await self.gateway.fetch_messages(cursor, wait_seconds)
        if len(messages) > 1 and await self._record_all(messages):
            return len(messages)
        for message in messages:
            await self.handle(message)
        return len(messages)

    async def _record_all(self, messages: Sequence[ReturnMessage]) -> bool:
        """Record a fetch's messages in one transaction, with the cursor past the last one.

        One commit per fetch rather than one per message. ``False``, with nothing recorded,
        when one is unreadable or an acte moved under its reply: :meth:`handle` then records
        them one by one, with its retries and its logs for each case.
        """
        contents: list[actes_xml.ReturnMessageContent] = []
        for message in messages:
            try:
                contents.append(actes_xml.read_return_message(message.content))
            except actes_xml.ActesXmlError:
                return False
        try:
            async with self.database.session() as session:
                for message, content in zip(messages, contents, strict=True):
                    await self._record_in(session, message, content)
                cursor = messages[-1].cursor
                await repository.save_cursor(session, CURSOR_NAME, cursor, service.now_utc())
                await session.commit()
        except service.StaleActe:
            # What was logged for the messages before this one was rolled back with them.
            log.info("prefecture.messages_raced", count=len(messages))
            return False
        return True

    async def handle(self, message: ReturnMessage) -> None:
        """Record one return message, with the cursor past it, in one transaction."""
        try:
            content = actes_xml.read_return_message(message.content)
        except actes_xml.ActesXmlError as exc:
            log.error("prefecture.message_unreadable", filename=message.filename, error=str(exc))
            await self._advance(message)
            return

        # The transmitter may record the same acte transmitted at this very moment: the
        # loser of that race reads the acte again and records the reply on top.
        for _ in range(STALE_RETRIES):
            try:
                await self._record(message, content)
            except service.StaleActe:
                log.info("prefecture.message_raced", filename=message.filename)
                continue
            return
        raise service.StaleActe(f"{message.filename}: the acte kept changing under the reply")

    async def _record(
        self, message: ReturnMessage, content: actes_xml.ReturnMessageContent
    ) -> None:
        async with self.database.session() as session:
            await self._record_in(session, message, content)
            await repository.save_cursor(session, CURSOR_NAME, message.cursor, service.now_utc())
            await session.commit()

    async def _record_in(
        self,
        session: AsyncSession,
        message: ReturnMessage,
        content: actes_xml.ReturnMessageContent,
    ) -> None:
        if isinstance(content, actes_xml.ClassificationRecue):
            await replies.record_classification(
                session, self.store, self.settings, content, message
            )
            if self.on_classification is not None:
                self.on_classification(message.departement or self.settings.departement)
            return
        if isinstance(content, actes_xml.ClassificationInchangee):
            log.info("classification.unchanged", departement=message.departement)
            return
        identifiant = (
            message.identifiant_acte
            if isinstance(content, actes_xml.Anomalie)
            else content.identifiant_acte or message.identifiant_acte
        )
        acte = await repository.acte_for_return_message(
            session, message.transmission_id, identifiant
        )
        if acte is None:
            log.error("prefecture.message_unmatched", filename=message.filename)
            return
        with service.in_trace_of(acte, "acte.reply_received"):
            await self._apply(session, acte, content, message)

    async def _apply(
        self,
        session: AsyncSession,
        acte: Acte,
        content: actes_xml.ReturnMessageContent,
        message: ReturnMessage,
    ) -> None:
        store, settings = self.store, self.settings
        if isinstance(content, actes_xml.AccuseReception):
            await self._acknowledge(session, acte, content, message)
        elif isinstance(content, actes_xml.Anomalie | actes_xml.AnomalieEnveloppe):
            await self._refuse(session, acte, content, message)
        elif isinstance(content, actes_xml.CourrierPrefecture):
            await replies.record_courrier(session, store, settings, acte, content, message)
        elif isinstance(content, actes_xml.AccuseReponse):
            await replies.record_accuse_reponse(session, store, settings, acte, content, message)
        elif isinstance(content, actes_xml.AccuseAnnulation):
            await replies.record_annulation(session, store, settings, acte, content, message)

    async def _advance(self, message: ReturnMessage) -> None:
        async with self.database.session() as session:
            await repository.save_cursor(session, CURSOR_NAME, message.cursor, service.now_utc())
            await session.commit()

    async def _acknowledge(
        self,
        session: AsyncSession,
        acte: Acte,
        ar: actes_xml.AccuseReception,
        message: ReturnMessage,
    ) -> None:
        if ar.identifiant_acte != acte.identifiant_acte:
            log.error("prefecture.ar_acte_mismatch", acte_id=str(acte.id), got=ar.identifiant_acte)
            return
        if not await self._ensure_transmitted(session, acte, message):
            return

        self._check_classification(acte, ar.classification_date_en_cours)
        document = await self._store_reply(session, acte, DocumentRole.AR_ACTE, message)
        existing = await repository.documents_of(session, acte.id)
        stamped = await self._store_stamped(session, acte, existing, ar.date_reception)
        await service.change_state(
            session,
            acte,
            ActeState.ACKNOWLEDGED,
            reason=f"accusé de réception {message.filename}",
            acknowledged_at=service.now_utc(),
            date_reception=ar.date_reception,
        )
        documents = [*existing, document, *([stamped] if stamped else [])]
        service.publish_acknowledged(session, acte, _unique(documents), self.settings)
        log.info(
            "acte.acknowledged",
            acte_id=str(acte.id),
            tenant=acte.siren,
            identifiant=acte.identifiant_acte,
            date_reception=ar.date_reception.isoformat(),
        )

    async def _refuse(
        self,
        session: AsyncSession,
        acte: Acte,
        anomalie: actes_xml.Anomalie | actes_xml.AnomalieEnveloppe,
        message: ReturnMessage,
    ) -> None:
        if not await self._ensure_transmitted(session, acte, message):
            return
        if isinstance(anomalie, actes_xml.Anomalie):
            self._check_classification(acte, anomalie.classification_date_en_cours)

        anomalie_document = await self._store_reply(session, acte, DocumentRole.ANOMALIE, message)
        await service.change_state(
            session,
            acte,
            ActeState.REFUSED,
            reason=f"anomalie {anomalie.nature}: {anomalie.detail}",
            refused_at=service.now_utc(),
            nature_anomalie=anomalie.nature,
            detail_anomalie=anomalie.detail,
        )
        service.publish_refused(session, acte, anomalie_document, self.settings)
        log.warning(
            "acte.refused",
            acte_id=str(acte.id),
            tenant=acte.siren,
            nature_anomalie=anomalie.nature,
            detail=anomalie.detail,
        )

    async def _ensure_transmitted(
        self, session: AsyncSession, acte: Acte, message: ReturnMessage
    ) -> bool:
        """Whether the acte can take the reply; a reply before our record proves the send."""
        if acte.state == ActeState.TRANSMITTING.value:
            await service.change_state(
                session,
                acte,
                ActeState.TRANSMITTED,
                reason="the prefecture's reply arrived before the send was recorded",
                transmitted_at=message.received_at,
                prefecture_transmission_id=message.transmission_id,
                next_attempt_at=None,
                last_error=None,
            )
            service.publish_transmitted(session, acte)
            # The same milestone as the transmitter's, which will find the acte moved on.
            log.info(
                "acte.transmitted",
                acte_id=str(acte.id),
                tenant=acte.siren,
                identifiant=acte.identifiant_acte,
                transmission_id=message.transmission_id,
                recorded_by="reply",
            )
        if acte.state != ActeState.TRANSMITTED.value:
            # A duplicate of a reply already recorded, or a reply about an earlier attempt.
            log.info("prefecture.message_ignored", acte_id=str(acte.id), state=acte.state)
            return False
        return True

    async def _store_stamped(
        self,
        session: AsyncSession,
        acte: Acte,
        documents: Sequence[ActeDocument],
        date_reception: date,
    ) -> ActeDocument | None:
        """The acte's PDF with the acknowledgement stamp, stored as ``acte_tamponne``."""
        pdf = next((d for d in documents if d.role == DocumentRole.ACTE.value), None)
        if pdf is None or any(d.role == DocumentRole.ACTE_TAMPONNE.value for d in documents):
            return None
        transmitted = as_utc(acte.transmitted_at or service.now_utc()).date()
        original = await self.store.get(pdf.sha256)
        try:
            content = await anyio.to_thread.run_sync(
                stamp.stamp_pdf, original, acte.identifiant_acte, transmitted, date_reception
            )
        except Exception:
            # The PDF was read at submission; a stamp that fails must not lose the ARActe.
            log.exception("acte.stamp_failed", acte_id=str(acte.id))
            return None
        (stored,) = await put_held(session, self.store, content)
        document = ActeDocument(
            acte_id=acte.id,
            role=DocumentRole.ACTE_TAMPONNE.value,
            filename=pdf.filename.removesuffix(".pdf") + "-tamponne.pdf",
            media_type=pdf.media_type,
            sha256=stored.sha256,
            size=stored.size,
            created_at=service.now_utc(),
            type_piece=pdf.type_piece,
        )
        repository.add(session, document)
        return document

    async def _store_reply(
        self, session: AsyncSession, acte: Acte, role: DocumentRole, message: ReturnMessage
    ) -> ActeDocument:
        (stored,) = await put_held(session, self.store, message.content)
        document = ActeDocument(
            acte_id=acte.id,
            role=role.value,
            filename=message.filename,
            media_type=MEDIA_TYPE_XML,
            sha256=stored.sha256,
            size=stored.size,
            created_at=service.now_utc(),
        )
        repository.add(session, document)
        return document


def _unique(documents: list[ActeDocument]) -> list[ActeDocument]:
    by_role: dict[str, ActeDocument] = {}
    for document in documents:
        by_role.setdefault(document.role, document)
    return list(by_role.values())
