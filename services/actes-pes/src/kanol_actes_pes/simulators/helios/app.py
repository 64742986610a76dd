"""The Hélios simulator's HTTP API, the contract that ``pes.helios.http_client`` speaks.

It stands in for the DGFiP's gateway and Hélios behind it: it takes PES_Aller deposits
(idempotent on ``Idempotency-Key``), really checks them (schema, known collectivité,
signatures, duplicate file, bordereau, piece and PJ) and queues a ``PES_ACQUIT``: every
``EtatAck`` 1, or 0 with numbered errors (``NumAnoAck``/``LibelleAnoAck``). An accepted
flow later yields a ``PES_Retour``. Delays, gateway failures (503) and refusals can be
drawn at configured rates. State lives in memory: a restart forgets deposits and files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from lxml import etree

from kanol_actes_pes.pes import pes_xml
from kanol_actes_pes.pes.errors import PesSignatureInvalid, PesSignerUntrusted
from kanol_actes_pes.pes.signature import TrustAnchors, verify_signatures
from kanol_actes_pes.simulators.helios import files
from kanol_actes_pes.simulators.helios.files import Element, Erreur, Piece
from kanol_common.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    install_problem_handlers,
)
from kanol_common.logging import get_logger

log = get_logger(__name__)

MAX_WAIT_SECONDS = 60.0
FILES_PER_PAGE = 100
MIB = 1024 * 1024


@dataclass
class HeliosConfig:
    ack_delay: float = 0.0
    retour_delay: float = 0.0
    # Share of deposits answered 503 with nothing recorded (a gateway failure).
    failure_rate: float = 0.0
    # Share of otherwise valid flows answered KO (ERREUR_AUTRE).
    refusal_rate: float = 0.0
    unknown_id_colls: frozenset[str] = frozenset()
    retours: bool = True
    max_bytes: int = 200 * MIB
    seed: int | None = None
    clock: Callable[[], float] = time.time


class DepositRefused(Problem):
    status = 422
    type_slug = "helios-deposit-refused"
    title = "Deposit refused by Hélios's gateway"


@dataclass(frozen=True)
class Deposit:
    id: str
    idempotency_key: str
    sha256: str
    nom_fic: str
    id_coll: str
    accepted: bool
    received_at: datetime


@dataclass(frozen=True)
class QueuedFile:
    seq: int
    id: str
    depot_id: str | None
    id_coll: str
    filename: str
    content: bytes
    available_at: float
    received_at: datetime


@dataclass
class _Feed:
    files: list[QueuedFile] = field(default_factory=list)

    def after(self, seq: int, now: float) -> list[QueuedFile]:
        return [f for f in self.files if f.seq > seq and f.available_at <= now][:FILES_PER_PAGE]


class HeliosSimulator:
    def __init__(self, config: HeliosConfig) -> None:
        self.config = config
        self.deposits: dict[str, Deposit] = {}
        self.acquits = _Feed()
        self.retours = _Feed()
        self._files = 0
        self._nom_fics: set[tuple[str, str]] = set()
        self._bordereaux: set[tuple[str, ...]] = set()
        self._pjs: set[tuple[str, str]] = set()
        self._random = random.Random(config.seed)  # noqa: S311 - a simulation, not a secret
        self._new_file = asyncio.Event()

    def deposit(self, key: str, content: bytes) -> Deposit:
        sha256 = hashlib.sha256(content).hexdigest()
        known = self.deposits.get(key)
        if known is not None:
            if known.sha256 != sha256:
                raise Conflict(f"The idempotency key {key} was used for another file")
            return known
        if self._random.random() < self.config.failure_rate:
            raise ServiceUnavailable("Simulated failure of Hélios's gateway")

        tree, header = self._readable(content)
        elements = self._check(tree, header)
        accepted = all(element.accepted for element in elements)
        now = self.config.clock()
        received_at = datetime.fromtimestamp(now, UTC)
        try:
            acquit = files.acquit(header, elements, received_at.date())
        except ValueError as exc:
            raise DepositRefused(f"The flow's header cannot be acknowledged: {exc}") from exc

        deposit = Deposit(
            id=str(uuid.uuid4()),
            idempotency_key=key,
            sha256=sha256,
            nom_fic=header.nom_fic,
            id_coll=header.id_coll,
            accepted=accepted,
            received_at=received_at,
        )
        self.deposits[key] = deposit
        if accepted:
            self._remember(tree, header)
        outcome = "OK" if accepted else "KO"
        stamp = received_at.strftime("%y%m%d%H%M%S")
        name = f"{header.id_post}_{stamp}-ACK-{_safe(header.nom_fic)}_{outcome}.xml"
        self._queue(
            self.acquits, deposit.id, header.id_coll, name, acquit, now + self.config.ack_delay
        )
        if accepted and self.config.retours:
            self._queue_retour(header, deposit, now)
        log.info(
            "helios.deposit_received", depot_id=deposit.id, nom_fic=header.nom_fic, outcome=outcome
        )
        return deposit

    def _readable(self, content: bytes) -> tuple[etree._ElementTree, pes_xml.PesHeader]:
        try:
            tree = pes_xml.parse_safely(content)
        except Problem as exc:
            raise DepositRefused(exc.detail) from exc
        root = tree.getroot()
        if root.tag != f"{{{pes_xml.NS_ALLER}}}PES_Aller":
            raise DepositRefused(f"The root element is {root.tag}, not PES_Aller")
        try:
            return tree, pes_xml.read_header(root)
        except ValueError as exc:
            raise DepositRefused(f"The flow's EnTetePES cannot be read: {exc}") from exc

    def _check(self, tree: etree._ElementTree, header: pes_xml.PesHeader) -> list[Element]:
        technique = files.DOMAINE_TECHNIQUE
        errors = pes_xml.schema_errors(tree, pes_xml.PES_ALLER_XSD)
        if errors:
            detail = f"ligne {errors[0].line} : {errors[0].message}"
            return [Element(technique, False, erreurs=(Erreur("ERREUR_SCHEMA_INCOMPLET", detail),))]
        if header.id_coll in self.config.unknown_id_colls:
            label = f"IdColl {header.id_coll} inconnu dans Hélios"
            return [Element(technique, False, erreurs=(Erreur("ERREUR_SIRET", label),))]
        try:
            verify_signatures(
                tree, TrustAnchors(), datetime.fromtimestamp(self.config.clock(), UTC)
            )
        except PesSignatureInvalid as exc:
            erreur = Erreur("ERREUR_SIGNATURE_INVALIDE", exc.detail)
            return [Element(technique, False, erreurs=(erreur,))]
        except PesSignerUntrusted as exc:
            erreur = Erreur("ERREUR_CERTIFICAT", exc.detail)
            return [Element(files.DOMAINE_CERTIFICAT, False, erreurs=(erreur,))]
        if (header.id_coll, header.nom_fic) in self._nom_fics:
            label = f"Doublon de fichier : {header.nom_fic} a déjà été reçu pour {header.id_coll}"
            return [Element(technique, False, erreurs=(Erreur("ERREUR_AUTRE", label),))]

        elements = [*self._bordereaux_of(tree, header), *self._pjs_of(tree, header)]
        if self._random.random() < self.config.refusal_rate:
            refus = Erreur("ERREUR_AUTRE", "Refus simulé par le simulateur Hélios")
            elements.append(Element(technique, False, erreurs=(refus,)))
        return elements or [Element(technique, True)]

    def _bordereaux_of(self, tree: etree._ElementTree, header: pes_xml.PesHeader) -> list[Element]:
        elements: list[Element] = []
        for domain, path in _BORDEREAUX:
            for bordereau in tree.getroot().iterfind(path):
                key = _bordereau_key(header, domain, bordereau)
                exer, id_bord = key[-2], key[-1]
                if key not in self._bordereaux:
                    elements.append(Element(domain, True, num_bord=id_bord, exercice_bord=exer))
                    continue
                label = f"Le bordereau {id_bord} de l'exercice {exer} a déjà été reçu"
                pieces = tuple(
                    Piece(
                        _value(piece, "BlocPiece/InfoPce/IdPce")
                        or _value(piece, "BlocPiece/IdPce"),
                        (Erreur("ERREUR_DOUBLON_PIECE", "Pièce déjà reçue"),),
                    )
                    for piece in bordereau.iterfind("Piece")
                )
                erreurs = (Erreur("ERREUR_DOUBLON_BORDEREAU", label),)
                elements.append(
                    Element(
                        domain,
                        False,
                        num_bord=id_bord,
                        exercice_bord=exer,
                        erreurs=erreurs,
                        pieces=tuple(p for p in pieces if p.num_piece.isdigit()),
                    )
                )
        return elements

    def _pjs_of(self, tree: etree._ElementTree, header: pes_xml.PesHeader) -> list[Element]:
        elements: list[Element] = []
        for pj in tree.getroot().iterfind("PES_PJ/PJ"):
            id_unique = _value(pj, "IdUnique")
            if not id_unique:
                continue
            if (header.id_coll, id_unique) in self._pjs:
                erreur = Erreur("ERREUR_DOUBLON_PJ", f"La PJ {id_unique} a déjà été reçue")
                elements.append(
                    Element(files.DOMAINE_PJ, False, id_unique=id_unique, erreurs=(erreur,))
                )
            else:
                elements.append(Element(files.DOMAINE_PJ, True, id_unique=id_unique))
        return elements

    def _remember(self, tree: etree._ElementTree, header: pes_xml.PesHeader) -> None:
        self._nom_fics.add((header.id_coll, header.nom_fic))
        for domain, path in _BORDEREAUX:
            for bordereau in tree.getroot().iterfind(path):
                self._bordereaux.add(_bordereau_key(header, domain, bordereau))
        for pj in tree.getroot().iterfind("PES_PJ/PJ"):
            self._pjs.add((header.id_coll, _value(pj, "IdUnique")))

    def _queue_retour(self, header: pes_xml.PesHeader, deposit: Deposit, now: float) -> None:
        day = deposit.received_at.date()
        stamp = deposit.received_at.strftime("%Y%m%d%H%M%S")
        nom_fic = (
            f"PES2R_DEP_P_{header.cod_col}_{header.cod_bud}_{header.id_post}_{day:%Y%m%d}_{stamp}"
        )
        content = files.retour(header, nom_fic, day)
        self._queue(
            self.retours,
            None,
            header.id_coll,
            f"{nom_fic}.xml",
            content,
            now + self.config.retour_delay,
        )

    def _queue(
        self,
        feed: _Feed,
        depot_id: str | None,
        id_coll: str,
        filename: str,
        content: bytes,
        available_at: float,
    ) -> None:
        self._files += 1
        feed.files.append(
            QueuedFile(
                seq=self._files,
                id=str(uuid.uuid4()),
                depot_id=depot_id,
                id_coll=id_coll,
                filename=filename,
                content=content,
                available_at=available_at,
                received_at=datetime.fromtimestamp(available_at, UTC),
            )
        )
        self._new_file.set()

    async def wait_for(self, feed: _Feed, after: int, wait: float) -> list[QueuedFile]:
        deadline = time.monotonic() + wait
        while True:
            found = feed.after(after, self.config.clock())
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self._new_file.clear()
            # Wake on a new file, or soon enough to see a delayed one become available.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_file.wait(), min(remaining, 0.05))


_BORDEREAUX = (
    (files.DOMAINE_DEPENSE, "PES_DepenseAller/Bordereau"),
    (files.DOMAINE_RECETTE, "PES_RecetteAller/Bordereau"),
)


def _value(parent: etree._Element, path: str) -> str:
    element = parent.find(path)
    return "" if element is None else str(element.get("V", ""))


def _bordereau_key(
    header: pes_xml.PesHeader, domain: str, bordereau: etree._Element
) -> tuple[str, ...]:
    exer = _value(bordereau, "BlocBordereau/Exer")
    id_bord = _value(bordereau, "BlocBordereau/IdBord")
    return (header.id_coll, header.cod_col, header.cod_bud, domain, exer, id_bord)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:100]


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit():
        raise BadRequest(f"cursor {value!r} is not a number")
    return int(value)


def _receipt(deposit: Deposit) -> dict[str, Any]:
    return {
        "depot_id": deposit.id,
        "idempotency_key": deposit.idempotency_key,
        "nom_fic": deposit.nom_fic,
        "id_coll": deposit.id_coll,
        "sha256": deposit.sha256,
        "accepted": deposit.accepted,
        "received_at": deposit.received_at.isoformat(),
    }


def _file(queued: QueuedFile) -> dict[str, Any]:
    return {
        "cursor": str(queued.seq),
        "id": queued.id,
        "depot_id": queued.depot_id,
        "id_coll": queued.id_coll,
        "filename": queued.filename,
        "received_at": queued.received_at.isoformat(),
        "media_type": "application/xml",
        "content_base64": base64.b64encode(queued.content).decode("ascii"),
    }


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The file exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The file exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_simulator_app(config: HeliosConfig | None = None) -> FastAPI:
    simulator = HeliosSimulator(config or HeliosConfig())
    app = FastAPI(
        title="Hélios simulator", description="Simulated DGFiP Hélios gateway for PES V2."
    )
    install_problem_handlers(app)
    app.state.simulator = simulator

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/depots", status_code=202)
    async def post_depot(
        request: Request,
        idempotency_key: Annotated[str, Header(min_length=1, max_length=200)],
    ) -> dict[str, Any]:
        content = await _read_body(request, simulator.config.max_bytes)
        # Checking a flow is CPU work: keep the event loop free for the long polls.
        deposit = await asyncio.to_thread(simulator.deposit, idempotency_key, content)
        return _receipt(deposit)

    @app.get("/v1/depots")
    async def get_depots(idempotency_key: str | None = None) -> dict[str, Any]:
        if idempotency_key is None:
            return {"depots": [_receipt(d) for d in simulator.deposits.values()]}
        found = simulator.deposits.get(idempotency_key)
        return {"depots": [] if found is None else [_receipt(found)]}

    @app.get("/v1/acquits")
    async def get_acquits(
        after: str | None = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
    ) -> dict[str, Any]:
        start = _cursor(after)
        found = await simulator.wait_for(simulator.acquits, start, wait)
        cursor = found[-1].seq if found else start
        return {"files": [_file(f) for f in found], "cursor": str(cursor)}

    @app.get("/v1/retours")
    async def get_retours(after: str | None = None) -> dict[str, Any]:
        start = _cursor(after)
        found = simulator.retours.after(start, simulator.config.clock())
        cursor = found[-1].seq if found else start
        return {"files": [_file(f) for f in found], "cursor": str(cursor)}

    return app
