"""What the authority sends after the dépôt: cancellation (6-1), answers to the prefecture's
letters (2-2, 3-3, 3-4, 4-3, 4-4), and classification requests (7-1).

A cancellation or an answer is recorded as a pending :class:`ActeMessage` with its XML and
files in the request's transaction; the :class:`MessageSender` sends it later under the
idempotency key ``{identifiant_acte}/{message id}``, so a send repeated after a crash or a
lost answer is one transmission at the gateway, as for the acte itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes import repository, service
from kanol_actes_pes.acte import (
    CANCELLABLE_AT_PREFECTURE,
    CANCELLABLE_LOCALLY,
    TYPE_PIECE_PATTERN,
    ActeState,
)
from kanol_actes_pes.errors import ActeNotCancellable, AnswerInvalid, AnswerNotAllowed
from kanol_actes_pes.models import (
    Acte,
    ActeDocument,
    ActeMessage,
    MessageDirection,
    MessageState,
    message_role,
)
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import (
    ArchiveFile,
    GatewayBusy,
    GatewayUnavailable,
    PrefectureGateway,
    TransmissionRejected,
)
from kanol_actes_pes.prefecture.transmission import (
    MEDIA_TYPE_PDF,
    MEDIA_TYPE_XML,
    build_message_archive,
    message_filename,
)
from kanol_actes_pes.replies import store_message_documents
from kanol_actes_pes.settings import ActesPesSettings
from kanol_actes_pes.transmitter import emetteur_of
from kanol_actes_pes.upload import ReceivedPdf
from kanol_common import outbox
from kanol_common.db import Database
from kanol_common.events.actes import (
    ActeAnswerSent,
    ActeCancellationRequested,
    ActeCancelled,
    ActeMessageRefused,
)
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore
from kanol_common.wakeup import Wakeup

log = get_logger(__name__)

# The annulation the authority sends (ACTES message 6-1).
CANCELLATION_CODE = "6-1"

# The answers each letter of the prefecture takes.
ANSWERS_BY_KIND = {
    "courrier_simple": ("2-2",),
    "demande_pieces_complementaires": ("3-3", "3-4"),
    "lettre_observations": ("4-3", "4-4"),
}
ANSWER_KINDS = {
    "2-2": "reponse_courrier_simple",
    "3-3": "refus_pieces_complementaires",
    "3-4": "pieces_complementaires",
    "4-3": "rejet_lettre_observations",
    "4-4": "reponse_lettre_observations",
}


def _new_message(acte: Acte, number: int, code: str, kind: str) -> ActeMessage:
    now = service.now_utc()
    return ActeMessage(
        acte_id=acte.id,
        number=number,
        direction=MessageDirection.TO_PREFECTURE.value,
        code=code,
        kind=kind,
        state=MessageState.PENDING.value,
        created_at=now,
        updated_at=now,
    )


async def request_cancellation(
    session: AsyncSession,
    store: LocalObjectStore,
    acte: Acte,
    reason: str | None,
) -> ActeMessage | None:
    """Cancel the acte: at once if it never left, else by a 6-1 the prefecture acknowledges."""
    state = ActeState(acte.state)
    now = service.now_utc()
    if state in CANCELLABLE_LOCALLY:
        await service.change_state(
            session,
            acte,
            ActeState.CANCELLED,
            reason=f"cancelled before transmission: {reason or 'no reason given'}",
            cancellation_requested_at=now,
            cancellation_reason=reason,
            cancelled_at=now,
        )
        _publish_requested(session, acte, reason)
        outbox.publish(
            session,
            ActeCancelled(
                acte_id=str(acte.id),
                siren=acte.siren,
                identifiant_acte=acte.identifiant_acte,
                date_reception=now.date(),
                cancelled_at=now,
                documents=(),
            ),
            subject=str(acte.id),
            tenant=acte.siren,
        )
        return None
    if state not in CANCELLABLE_AT_PREFECTURE:
        raise ActeNotCancellable(
            f"The acte is {state.value}: only an acte waiting for transmission or acknowledged"
            " by the prefecture can be cancelled",
            state=state.value,
        )

    await service.change_state(
        session,
        acte,
        ActeState.CANCELLATION_REQUESTED,
        reason=f"annulation (6-1) requested: {reason or 'no reason given'}",
        cancellation_requested_at=now,
        cancellation_reason=reason,
    )
    number = await repository.next_message_number(session, acte.id)
    message = _new_message(acte, number, CANCELLATION_CODE, "annulation")
    repository.add(session, message)
    xml = actes_xml.build_annulation(acte.identifiant_acte)
    await store_message_documents(
        session,
        store,
        acte,
        number,
        (message_filename(acte.identifiant_acte, CANCELLATION_CODE, 0), xml),
        [],
    )
    _publish_requested(session, acte, reason)
    log.info("acte.cancellation_requested", acte_id=str(acte.id), tenant=acte.siren)
    return message


def _publish_requested(session: AsyncSession, acte: Acte, reason: str | None) -> None:
    outbox.publish(
        session,
        ActeCancellationRequested(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            requested_at=service.now_utc(),
            reason=reason,
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )


@dataclass(frozen=True)
class AnswerFile:
    type_piece: str
    pdf: ReceivedPdf


async def answer(
    session: AsyncSession,
    store: LocalObjectStore,
    acte: Acte,
    letter: ActeMessage,
    code: str,
    files: Sequence[AnswerFile],
) -> ActeMessage:
    """Record the authority's answer to a letter of the prefecture, to be sent."""
    allowed = ANSWERS_BY_KIND.get(letter.kind, ())
    if letter.direction != MessageDirection.FROM_PREFECTURE.value or code not in allowed:
        raise AnswerNotAllowed(
            f"A {letter.kind} ({letter.code}) takes the answers {list(allowed) or 'none'},"
            f" not {code}",
            allowed=list(allowed),
        )
    if letter.state != MessageState.RECEIVED.value:
        raise AnswerNotAllowed(f"The message {letter.id} was already answered")
    if not files:
        raise AnswerInvalid("An answer carries at least one PDF as 'documents'")
    for file in files:
        if not TYPE_PIECE_PATTERN.fullmatch(file.type_piece):
            raise AnswerInvalid(f"type_piece {file.type_piece!r} is not a code such as 99_DE")
    assert letter.date_courrier is not None

    number = await repository.next_message_number(session, acte.id)
    message = _new_message(acte, number, code, ANSWER_KINDS[code])
    message.in_reply_to = letter.id
    repository.add(session, message)
    names = [
        f"{file.type_piece}-{acte.identifiant_acte}-{code}_{index}.pdf"
        for index, file in enumerate(files, start=1)
    ]
    xml = actes_xml.build_answer(code, acte.identifiant_acte, letter.date_courrier, names)
    attached: list[tuple[str, bytes, str, str | None]] = []
    for name, file in zip(names, files, strict=True):
        file.pdf.file.seek(0)
        attached.append((name, file.pdf.file.read(), MEDIA_TYPE_PDF, file.type_piece))
    await store_message_documents(
        session,
        store,
        acte,
        number,
        (message_filename(acte.identifiant_acte, code, 0), xml),
        attached,
    )
    letter.state = MessageState.ANSWERED.value
    letter.updated_at = service.now_utc()
    session.add(letter)
    log.info("acte.answer_recorded", acte_id=str(acte.id), code=code, tenant=acte.siren)
    return message


@dataclass
class MessageSender:
    """Sends pending cancellations and answers; see the module's docstring for the guard."""

    database: Database
    store: LocalObjectStore
    settings: ActesPesSettings
    gateway: PrefectureGateway
    # The Transmitter's: see there.
    volume_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._wakeup = Wakeup()

    def wake(self) -> None:
        self._wakeup.ring()

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("message_sender.turn_failed")
            await self._wakeup.wait(self.settings.transmit_poll_seconds)

    async def send_due(self) -> int:
        """Send the pending messages, oldest first, within the hourly volume left."""
        async with self.volume_lock:
            return await self._send_within_volume()

    async def _send_within_volume(self) -> int:
        now = service.now_utc()
        async with self.database.session() as session:
            sent = await repository.sent_since(session, now - timedelta(hours=1))
            budget = max(self.settings.prefecture_max_per_hour - sent, 0)
            due = await repository.outgoing_due(
                session, now, min(self.settings.transmit_batch_size, budget)
            )
        for message in due:
            await self.send(message.id)
        return len(due)

    async def send(self, message_id: uuid.UUID) -> None:
        async with self.database.session() as session:
            message = await session.get(ActeMessage, message_id, populate_existing=True)
            if message is None or message.state != MessageState.PENDING.value:
                return
            acte = await repository.get_acte(session, message.acte_id)
            assert acte is not None
            documents = await repository.documents_of(session, acte.id)
            files = [d for d in documents if d.role.startswith(message_role(message.number) + "_")]
            xml = next(d for d in documents if d.role == message_role(message.number))
            archive = build_message_archive(
                emetteur_of(acte, self.settings),
                (self.settings.adresse_retour,),
                key=f"{acte.identifiant_acte}/{message.id}",
                identifiant_acte=acte.identifiant_acte,
                message=await self._file(xml),
                files=tuple([await self._file(d) for d in sorted(files, key=_position)]),
                number=message.number + 1_000_000 * (message.id.int % 1000),
                day=service.now_utc().date(),
            )
            try:
                receipt = await self.gateway.transmit(archive)
            except TransmissionRejected as exc:
                await self._fail(session, acte, message, str(exc))
                return
            except (GatewayBusy, GatewayUnavailable) as exc:
                await self._postpone(session, message, str(exc))
                return
            now = service.now_utc()
            if not await repository.mark_message_sent(
                session, message.id, receipt.transmission_id, now
            ):
                # Another sender recorded it (same key: one transmission at the gateway).
                return
            message.sent_at = now
            if message.code in ANSWER_KINDS:
                _publish_answer(session, self.settings, acte, message, [xml, *files])
            await session.commit()
        log.info("acte.message_sent", acte_id=str(acte.id), code=message.code)

    async def _file(self, document: ActeDocument) -> ArchiveFile:
        content = await self.store.get(document.sha256)
        return ArchiveFile(document.filename, content, document.media_type)

    async def _fail(
        self, session: AsyncSession, acte: Acte, message: ActeMessage, error: str
    ) -> None:
        """The gateway refused the message outright (too large, malformed): sending it
        again would be refused again, so it is handed back to the authority. The letter
        it answered opens again, a refused 6-1 puts the acte back to acknowledged."""
        now = service.now_utc()
        message.state = MessageState.FAILED.value
        message.attempts += 1
        message.last_error = error
        message.updated_at = now
        session.add(message)
        if message.in_reply_to is not None:
            letter = await session.get(ActeMessage, message.in_reply_to)
            if letter is not None and letter.state == MessageState.ANSWERED.value:
                letter.state = MessageState.RECEIVED.value
                letter.updated_at = now
                session.add(letter)
        if message.code == CANCELLATION_CODE and acte.state == ActeState.CANCELLATION_REQUESTED:
            await service.change_state(
                session,
                acte,
                ActeState.ACKNOWLEDGED,
                reason=f"the gateway refused the annulation (6-1): {error}",
                cancellation_requested_at=None,
                cancellation_reason=None,
            )
        outbox.publish(
            session,
            ActeMessageRefused(
                acte_id=str(acte.id),
                siren=acte.siren,
                identifiant_acte=acte.identifiant_acte,
                message_id=str(message.id),
                code=message.code,
                in_reply_to=None if message.in_reply_to is None else str(message.in_reply_to),
                reason=error,
                refused_at=now,
            ),
            subject=str(acte.id),
            tenant=acte.siren,
        )
        await session.commit()
        log.error(
            "acte.message_refused",
            acte_id=str(acte.id),
            message_id=str(message.id),
            code=message.code,
            tenant=acte.siren,
            error=error,
        )

    async def _postpone(self, session: AsyncSession, message: ActeMessage, error: str) -> None:
        seconds = self.settings.transmit_retry_base_seconds * 2 ** min(message.attempts, 10)
        seconds = min(seconds, self.settings.transmit_retry_max_seconds)
        message.attempts += 1
        message.last_error = error
        message.next_attempt_at = service.now_utc() + timedelta(seconds=seconds)
        message.updated_at = service.now_utc()
        session.add(message)
        await session.commit()
        log.warning("acte.message_deferred", message_id=str(message.id), error=error)


def _position(document: ActeDocument) -> int:
    return document.position or 0


def _publish_answer(
    session: AsyncSession,
    settings: ActesPesSettings,
    acte: Acte,
    message: ActeMessage,
    documents: list[ActeDocument],
) -> None:
    assert message.sent_at is not None and message.in_reply_to is not None
    outbox.publish(
        session,
        ActeAnswerSent(
            acte_id=str(acte.id),
            siren=acte.siren,
            identifiant_acte=acte.identifiant_acte,
            message_id=str(message.id),
            in_reply_to=str(message.in_reply_to),
            code=message.code,
            sent_at=message.sent_at,
            documents=tuple(service.document_ref(settings, d) for d in documents),
        ),
        subject=str(acte.id),
        tenant=acte.siren,
    )


async def request_classification(
    gateway: PrefectureGateway, settings: ActesPesSettings, departement: str, held: date | None
) -> None:
    """Send a 7-1 for the département; its answer (7-2 or 7-3) comes with the replies.

    Asking twice is harmless (the answer is a version the receiver keeps once), so the
    request is not recorded: a lost one is asked again at the next start or refresh.
    """
    emetteur = actes_xml.Emetteur(
        siren=settings.classification_siren,
        departement=departement,
        arrondissement=settings.arrondissement,
        nature_collectivite=settings.nature_collectivite,
    )
    request_id = uuid.uuid4()
    name = f"{departement}-{settings.classification_siren}----7-1_0.xml"
    archive = build_message_archive(
        emetteur,
        (settings.adresse_retour,),
        key=f"classification/{departement}/{request_id}",
        identifiant_acte="",
        message=ArchiveFile(name, actes_xml.build_demande_classification(held), MEDIA_TYPE_XML),
        files=(),
        number=request_id.int % 1_000_000_000,
        day=service.now_utc().date(),
    )
    await gateway.transmit(archive)
    log.info("classification.requested", departement=departement, held=str(held))


async def request_classifications(
    database: Database, settings: ActesPesSettings, gateway: PrefectureGateway
) -> None:
    """At start: a 7-1 for each département in use, naming the version held."""
    async with database.session() as session:
        departements = {settings.departement, *await repository.departements_in_use(session)}
        held = {}
        for departement in departements:
            stored = await repository.latest_classification(session, departement)
            held[departement] = stored.date_classification if stored else None
    for departement in sorted(departements):
        try:
            await request_classification(gateway, settings, departement, held[departement])
        except Exception as exc:
            # The seed or the last version held stays in use; the next start asks again.
            log.warning("classification.request_failed", departement=departement, error=str(exc))


@dataclass
class ClassificationRequester:
    """Sends a 7-1 for a département soon, at most once per ``interval_seconds`` each."""

    gateway: PrefectureGateway
    settings: ActesPesSettings
    database: Database
    interval_seconds: float = 300.0

    def __post_init__(self) -> None:
        self._asked: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def ask_soon(self, departement: str) -> None:
        now = time.monotonic()
        if now - self._asked.get(departement, -self.interval_seconds) < self.interval_seconds:
            return
        self._asked[departement] = now
        task = asyncio.create_task(self._ask(departement), name=f"classification-{departement}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, departement: str) -> None:
        async with self.database.session() as session:
            stored = await repository.latest_classification(session, departement)
        held = stored.date_classification if stored else None
        try:
            await request_classification(self.gateway, self.settings, departement, held)
        except Exception as exc:
            log.warning("classification.request_failed", departement=departement, error=str(exc))
