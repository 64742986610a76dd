"""The prefecture simulator's HTTP API, the contract that ``prefecture.http_client`` speaks.

It stands in for the @CTES gateway and the prefecture behind it: it takes transmissions
(idempotent on ``Idempotency-Key``, capped per hour), really checks them, and queues the
reply each one gets (ARActe, or AnomalieActe) for the sender to long-poll.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pypdf import PdfWriter

from kanol_actes_pes import classification
from kanol_actes_pes.prefecture.actes_xml import ActesXmlError, qname
from kanol_actes_pes.simulators.prefecture import replies
from kanol_actes_pes.simulators.prefecture.inspection import (
    ArchiveRefused,
    Inspection,
    Limits,
    inspect,
    read_archive,
)
from kanol_actes_pes.simulators.prefecture.store import (
    NewMessage,
    QueuedMessage,
    SimulatorStore,
    Transmission,
)
from kanol_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    Problem,
    install_problem_handlers,
    problem_response,
)
from kanol_common.logging import get_logger

log = get_logger(__name__)

MAX_WAIT_SECONDS = 60.0
MESSAGES_PER_PAGE = 100
HOUR = 3600.0


@dataclass
class SimulatorConfig:
    state_path: Path | str = Path("data/prefecture-simulator.sqlite3")
    ack_delay: float = 0.0
    anomaly_rate: float = 0.0
    # Share of transmissions answered 503 before anything is recorded (a gateway failing).
    failure_rate: float = 0.0
    max_per_hour: int = 1000
    # The RetourClassification the prefecture holds (the shipped seed by default);
    # ``classification_date`` overrides the version it declares, as an older test did.
    classification_xml: bytes | None = None
    classification_date: date | None = None
    limits: Limits = field(default_factory=Limits)
    seed: int | None = None
    clock: Callable[[], float] = time.time


class OperatorLetter(BaseModel):
    """What the operator asks the simulated prefecture to send about an acte."""

    kind: Literal["courrier_simple", "pieces_complementaires", "lettre_observations", "defere"]
    texte: str = Field(default="Courrier de la préfecture (simulé)", max_length=2000)


LETTER_KINDS = {
    "courrier_simple": ("CourrierSimple", "2-1"),
    "pieces_complementaires": ("DemandePieceComplementaire", "3-1"),
    "lettre_observations": ("LettreObservations", "4-1"),
    "defere": ("DefereTA", "5-1"),
}


class TransmissionRefused(Problem):
    status = 422
    type_slug = "prefecture-transmission-refused"
    title = "Transmission refused by the prefecture's gateway"


class GatewayFailure(Problem):
    status = 503
    type_slug = "prefecture-gateway-failure"
    title = "The prefecture's gateway failed"


class VolumeExceeded(Problem):
    status = 429
    type_slug = "prefecture-volume-exceeded"
    title = "Hourly volume of transmissions reached"


class PrefectureSimulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.store = SimulatorStore(config.state_path)
        self.set_classification(config.classification_xml or classification.seed_bytes())
        if config.classification_date is not None:
            self.classification_date = config.classification_date
        self._random = random.Random(config.seed)  # noqa: S311 - a simulation, not a secret
        self._new_message = asyncio.Event()

    def set_classification(self, xml: bytes) -> None:
        """Hold this RetourClassification as the current one (it must validate)."""
        self.classification = classification.read(xml)
        self.classification_xml = xml
        self.classification_date = self.classification.date_classification

    async def receive(self, idempotency_key: str, archive: bytes, name: str) -> Transmission:
        sha256 = hashlib.sha256(archive).hexdigest()
        known = self.store.find_by_key(idempotency_key)
        if known is not None:
            return self._replayed(known, sha256)
        self._check_volume()
        if self.config.failure_rate and self._random.random() < self.config.failure_rate:
            raise GatewayFailure("Simulated failure of the gateway; nothing was recorded")

        try:
            inspection = inspect(read_archive(archive, self.config.limits))
        except ArchiveRefused as exc:
            log.info("prefecture.transmission_refused", key=idempotency_key, detail=exc.detail)
            problem = TransmissionRefused(exc.detail)
            problem.status = exc.status
            raise problem from exc

        return self._record(idempotency_key, inspection, name, sha256, len(archive))

    def _replayed(self, known: Transmission, sha256: str) -> Transmission:
        if known.archive_sha256 != sha256:
            raise Conflict(
                f"The idempotency key {known.idempotency_key} was used for another archive"
            )
        log.info("prefecture.transmission_replayed", transmission_id=known.id)
        redelivered = self.store.redelivered(known.idempotency_key)
        assert redelivered is not None
        return redelivered

    def _check_volume(self) -> None:
        now = self.config.clock()
        count, oldest = self.store.count_since(now - HOUR)
        if count < self.config.max_per_hour:
            return
        retry_after = max(1, int((oldest or now) + HOUR - now) + 1)
        raise VolumeExceeded(
            f"{count} transmissions in the last hour, the limit is {self.config.max_per_hour}",
            retry_after=retry_after,
        )

    def _record(
        self, key: str, inspection: Inspection, name: str, sha256: str, size: int
    ) -> Transmission:
        if inspection.kind != "Acte":
            return self._record_message(key, inspection, name, sha256, size)
        declared = inspection.acte.findtext(qname("ClassificationDateVersion")) or ""
        if declared < self.classification_date.isoformat():
            inspection.anomalies.append(
                (
                    "002",
                    f"L'acte a été transmis avec une classification ({declared}) qui n'est pas"
                    f" à jour ({self.classification_date.isoformat()})",
                )
            )
        matiere = ".".join(
            element.get(qname("CodeMatiere")) or ""
            for level in range(1, 6)
            if (element := inspection.acte.find(qname(f"CodeMatiere{level}"))) is not None
        )
        if not self.classification.has_matiere(matiere):
            inspection.anomalies.append(
                ("006", f"La matière {matiere} n'existe pas dans la classification en vigueur")
            )
        if self.store.identifiant_known(inspection.identifiant_acte):
            inspection.anomalies.append(
                ("005", f"L'acte {inspection.identifiant_acte} a déjà été transmis")
            )
        if not inspection.anomalies and self._random.random() < self.config.anomaly_rate:
            inspection.anomalies.append(("099", "Anomalie simulée"))

        now = self.config.clock()
        transmission = Transmission(
            id=str(uuid.uuid4()),
            idempotency_key=key,
            identifiant_acte=inspection.identifiant_acte,
            siren=inspection.siren,
            archive_name=name,
            archive_sha256=sha256,
            size=size,
            outcome="anomalie" if inspection.anomalies else "accepted",
            deliveries=1,
            received_at=datetime.fromtimestamp(now, UTC),
        )
        reply = self._reply(inspection, transmission.received_at.date(), now)
        stored = self.store.record(transmission, now, reply)
        self._new_message.set()
        log.info(
            "prefecture.transmission_received",
            transmission_id=stored.id,
            identifiant_acte=stored.identifiant_acte,
            outcome=stored.outcome,
        )
        return stored

    def _record_message(
        self, key: str, inspection: Inspection, name: str, sha256: str, size: int
    ) -> Transmission:
        """A message after the dépôt: recorded, and answered as the prefecture does."""
        now = self.config.clock()
        transmission = Transmission(
            id=str(uuid.uuid4()),
            idempotency_key=key,
            identifiant_acte=inspection.identifiant_acte,
            siren=inspection.siren,
            archive_name=name,
            archive_sha256=sha256,
            size=size,
            outcome="message",
            deliveries=1,
            received_at=datetime.fromtimestamp(now, UTC),
        )
        reply = self._answer(inspection, transmission.received_at.date(), now)
        if reply is None:
            # A 2-2 or an acknowledgement of a letter: the prefecture does not answer them.
            stored = self.store.record(transmission, now, None)
        else:
            stored = self.store.record(transmission, now, reply)
            self._new_message.set()
        log.info("prefecture.message_received", kind=inspection.kind, key=key)
        return stored

    def _answer(self, inspection: Inspection, day: date, now: float) -> NewMessage | None:
        available = now + self.config.ack_delay
        root, kind = inspection.acte, inspection.kind
        identifiant = inspection.identifiant_acte
        stem = identifiant or f"{inspection.departement}-{inspection.siren}---"
        if kind == "Annulation":
            content = replies.accuse_annulation(identifiant, day)
            return NewMessage("6-2", stem, content, available)
        if kind == "DemandeClassification":
            held = root.findtext(qname("DateClassification"))
            if held == self.classification_date.isoformat():
                content = replies.classification_inchangee(self.classification_date)
                return NewMessage("7-3", stem, content, available, (), inspection.departement)
            return NewMessage(
                "7-2", stem, self.classification_xml, available, (), inspection.departement
            )
        date_courrier = root.get(qname("DateCourrierPref")) or day.isoformat()
        if kind in ("PieceComplementaire", "RefusPieceComplementaire"):
            content = replies.accuse_reponse(
                "ARPieceComplementaire", identifiant, date_courrier, day
            )
            return NewMessage("3-5", stem, content, available)
        if kind in ("ReponseLettreObservations", "RejetLettreObservations"):
            content = replies.accuse_reponse(
                "ARReponseRejetLettreObservations", identifiant, date_courrier, day
            )
            return NewMessage("4-5", stem, content, available)
        return None

    def send_letter(self, identifiant_acte: str, letter: OperatorLetter) -> None:
        """Queue a letter of the prefecture about an acte it acknowledged (operator's use)."""
        accepted = self.store.accepted(identifiant_acte)
        if accepted is None:
            raise NotFound(f"The prefecture never acknowledged an acte {identifiant_acte}")
        root_kind, code = LETTER_KINDS[letter.kind]
        now = self.config.clock()
        day = datetime.fromtimestamp(now, UTC).date()
        pdf_name = f"99_AU-{identifiant_acte}-{code}_1.pdf"
        content = replies.courrier(root_kind, identifiant_acte, day, letter.texte, [pdf_name])
        message = NewMessage(
            code, identifiant_acte, content, now, files=((pdf_name, _letter_pdf()),)
        )
        self.store.queue(accepted.id, identifiant_acte, message)
        self._new_message.set()
        log.info("prefecture.letter_sent", identifiant_acte=identifiant_acte, code=code)

    def _reply(self, inspection: Inspection, day: date, now: float) -> NewMessage:
        available = now + self.config.ack_delay
        classification = self.classification_date
        if inspection.anomalies:
            nature = inspection.anomalies[0][0]
            detail = " ; ".join(text for _, text in inspection.anomalies)
            content = replies.anomalie(inspection.acte, nature, detail, day, classification)
            return NewMessage("1-3", inspection.identifiant_acte, content, available)
        content = replies.accuse_reception(
            inspection.acte, inspection.identifiant_acte, day, classification
        )
        return NewMessage("1-2", inspection.identifiant_acte, content, available)

    async def wait_for_messages(self, after: int, wait: float) -> list[QueuedMessage]:
        deadline = time.monotonic() + wait
        while True:
            self._new_message.clear()
            messages = self.store.messages_after(after, self.config.clock(), MESSAGES_PER_PAGE)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages

            pause = remaining
            upcoming = self.store.next_available_after(after)
            if upcoming is not None:
                pause = min(pause, max(upcoming - self.config.clock(), 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_message.wait(), timeout=pause)


def create_simulator_app(config: SimulatorConfig | None = None) -> FastAPI:
    simulator = PrefectureSimulator(config or SimulatorConfig())
    app = FastAPI(
        title="Kanol prefecture simulator",
        description="A stand-in for the @CTES gateway and the prefecture: not the real thing.",
        version="0.1.0",
    )
    app.state.simulator = simulator
    install_problem_handlers(app)
    app.add_exception_handler(VolumeExceeded, _on_volume_exceeded)

    @app.get("/livez", tags=["health"])
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.post("/v1/transmissions", status_code=202)
    async def post_transmission(
        request: Request,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        """Take a transmission (tar.gz); the same Idempotency-Key gets the same answer."""
        if not idempotency_key or len(idempotency_key) > 200:
            raise BadRequest("An Idempotency-Key header of at most 200 characters is required")
        body = await _read_body(request, simulator.config.limits.max_archive_bytes)
        name = _archive_name(request.headers.get("content-disposition", ""))
        transmission = await simulator.receive(idempotency_key, body, name)
        return JSONResponse(_receipt(transmission), status_code=202)

    @app.get("/v1/transmissions")
    async def search_transmissions(
        idempotency_key: str | None = None, identifiant_acte: str | None = None
    ) -> dict[str, Any]:
        found = simulator.store.search(
            idempotency_key=idempotency_key, identifiant_acte=identifiant_acte
        )
        return {"transmissions": [_receipt(transmission) for transmission in found]}

    @app.get("/v1/transmissions/{transmission_id}")
    async def get_transmission(transmission_id: str) -> dict[str, Any]:
        transmission = simulator.store.get(transmission_id)
        if transmission is None:
            raise NotFound(f"No transmission {transmission_id}")
        return _receipt(transmission)

    @app.post("/v1/operator/actes/{identifiant_acte}/letters", status_code=202, tags=["operator"])
    async def send_letter(identifiant_acte: str, letter: OperatorLetter) -> dict[str, str]:
        """Make the prefecture send a letter (2-1, 3-1, 4-1) or a déféré (5-1) about an acte."""
        simulator.send_letter(identifiant_acte, letter)
        return {"identifiant_acte": identifiant_acte, "kind": letter.kind}

    @app.put("/v1/operator/classification", status_code=204, tags=["operator"])
    async def put_classification(request: Request) -> Response:
        """Replace the prefecture's classification (a RetourClassification, ISO-8859-1)."""
        body = await _read_body(request, 5 * 1024 * 1024)
        try:
            simulator.set_classification(body)
        except ActesXmlError as exc:
            raise BadRequest(f"Not a valid RetourClassification: {exc}") from exc
        return Response(status_code=204)

    @app.get("/v1/messages")
    async def get_messages(
        after: Annotated[int, Query(ge=0)] = 0,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
    ) -> dict[str, Any]:
        """Return messages after the cursor, waiting up to ``wait`` seconds for one."""
        messages = await simulator.wait_for_messages(after, wait)
        cursor = messages[-1].seq if messages else after
        return {"messages": [_message(message) for message in messages], "cursor": str(cursor)}

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The archive exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The archive exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _archive_name(disposition: str) -> str:
    _, _, rest = disposition.partition("filename=")
    return rest.strip().strip('"')[:200] or "transmission.tar.gz"


def _receipt(transmission: Transmission) -> dict[str, Any]:
    return {
        "transmission_id": transmission.id,
        "idempotency_key": transmission.idempotency_key,
        "identifiant_acte": transmission.identifiant_acte,
        "siren": transmission.siren,
        "archive_name": transmission.archive_name,
        "archive_sha256": transmission.archive_sha256,
        "size": transmission.size,
        "outcome": transmission.outcome,
        "deliveries": transmission.deliveries,
        "received_at": transmission.received_at.isoformat(),
    }


def _letter_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _message(message: QueuedMessage) -> dict[str, Any]:
    return {
        "departement": message.departement,
        "files": [
            {
                "name": name,
                "media_type": "application/pdf",
                "content_base64": base64.b64encode(content).decode("ascii"),
            }
            for name, content in message.files
        ],
        "cursor": str(message.seq),
        "code": message.code,
        "filename": message.filename,
        "transmission_id": message.transmission_id,
        "identifiant_acte": message.identifiant_acte,
        "received_at": message.created_at.isoformat(),
        "media_type": "application/xml",
        "content_base64": base64.b64encode(message.content).decode("ascii"),
    }


async def _on_volume_exceeded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VolumeExceeded)
    response = problem_response(exc, request)
    response.headers["Retry-After"] = str(exc.extensions["retry_after"])
    return response
