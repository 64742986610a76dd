"""Packaging an acte for the prefecture: the tar.gz of one transmission and its file names.

Names follow the @CTES conventions seen in the gateways' own files:

- envelope: ``EACT--{SIREN}--{YYYYMMDD}-{n}.xml`` (transmission date, and ``n`` a number
  unique to the transmission; Kanol uses the number of the claim in the acte's history,
  which no other transmission of the service shares);
- message: ``{identifiant_acte}-1-1_0.xml`` (message code 1-1, file 0 of the transmission);
- acte's main document: ``{CodeTypePJ}-{identifiant_acte}-1-1_1.pdf``, e.g.
  ``99_DE-035-213502388-20240312-2024_45-DE-1-1_1.pdf``; annexes follow as ``_2``... each
  under its own piece type code (``41_NC-...-1-1_2.pdf``);
- archive: ``EACT--{SIREN}--{YYYYMMDD}-{n}.tar.gz``, named after its envelope.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from datetime import date

from kanol_actes_pes.acte import Matiere, Nature
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import ArchiveFile, TransmissionArchive

MEDIA_TYPE_XML = "application/xml"
MEDIA_TYPE_PDF = "application/pdf"
MEDIA_TYPE_ARCHIVE = "application/gzip"

CODE_DEPOT = "1-1"


def message_filename(identifiant_acte: str, code: str, number: int) -> str:
    return f"{identifiant_acte}-{code}_{number}.xml"


def document_filename(type_piece: str, identifiant_acte: str, number: int) -> str:
    return f"{type_piece}-{identifiant_acte}-{CODE_DEPOT}_{number}.pdf"


def enveloppe_stem(siren: str, day: date, number: int) -> str:
    return f"EACT--{siren}--{day:%Y%m%d}-{number}"


def idempotency_key(identifiant_acte: str, transmission_id: str) -> str:
    """The key under which the gateway knows one transmission of one acte."""
    return f"{identifiant_acte}/{transmission_id}"


@dataclass(frozen=True)
class ActeToTransmit:
    """Everything a transmission of an acte is built from."""

    identifiant_acte: str
    emetteur: actes_xml.Emetteur
    adresses_retour: tuple[str, ...]
    date_decision: date
    numero_interne: str
    nature: Nature
    matiere: Matiere
    objet: str
    classification_date: date
    document: bytes
    type_piece: str | None = None
    # Each annexe's piece type code and bytes, in order.
    annexes: tuple[tuple[str, bytes], ...] = ()


def build_archive(
    acte: ActeToTransmit, *, transmission_id: str, number: int, day: date
) -> TransmissionArchive:
    """The envelope, the 1-1 message and the PDF, each checked, packed in one tar.gz."""
    type_piece = acte.type_piece or acte.nature.type_piece_principale
    pdf = ArchiveFile(
        name=document_filename(type_piece, acte.identifiant_acte, 1),
        content=acte.document,
        media_type=MEDIA_TYPE_PDF,
    )
    annexes = tuple(
        ArchiveFile(
            name=document_filename(code, acte.identifiant_acte, number),
            content=content,
            media_type=MEDIA_TYPE_PDF,
        )
        for number, (code, content) in enumerate(acte.annexes, start=2)
    )
    message = ArchiveFile(
        name=message_filename(acte.identifiant_acte, CODE_DEPOT, 0),
        content=actes_xml.build_acte(
            actes_xml.ActeMessage(
                date_decision=acte.date_decision,
                numero_interne=acte.numero_interne,
                nature=acte.nature,
                matiere=acte.matiere,
                objet=acte.objet,
                classification_date=acte.classification_date,
                document=pdf.name,
                annexes=tuple(annexe.name for annexe in annexes),
            )
        ),
        media_type=MEDIA_TYPE_XML,
    )
    stem = enveloppe_stem(acte.emetteur.siren, day, number)
    enveloppe = ArchiveFile(
        name=f"{stem}.xml",
        content=actes_xml.build_enveloppe(acte.emetteur, acte.adresses_retour, [message.name]),
        media_type=MEDIA_TYPE_XML,
    )

    return TransmissionArchive(
        idempotency_key=idempotency_key(acte.identifiant_acte, transmission_id),
        identifiant_acte=acte.identifiant_acte,
        filename=f"{stem}.tar.gz",
        content=pack([enveloppe, message, pdf, *annexes]),
        enveloppe=enveloppe,
        message=message,
        documents=(pdf, *annexes),
    )


def build_message_archive(
    emetteur: actes_xml.Emetteur,
    adresses_retour: tuple[str, ...],
    *,
    key: str,
    identifiant_acte: str,
    message: ArchiveFile,
    files: tuple[ArchiveFile, ...],
    number: int,
    day: date,
) -> TransmissionArchive:
    """A transmission of one message after the dépôt (6-1, 7-1, an answer) and its files."""
    stem = enveloppe_stem(emetteur.siren, day, number)
    enveloppe = ArchiveFile(
        name=f"{stem}.xml",
        content=actes_xml.build_enveloppe(emetteur, adresses_retour, [message.name]),
        media_type=MEDIA_TYPE_XML,
    )
    return TransmissionArchive(
        idempotency_key=key,
        identifiant_acte=identifiant_acte,
        filename=f"{stem}.tar.gz",
        content=pack([enveloppe, message, *files]),
        enveloppe=enveloppe,
        message=message,
        documents=files,
    )


def pack(files: list[ArchiveFile]) -> bytes:
    """A gzip-compressed tar of flat, regular files; byte-identical for identical input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            info = tarfile.TarInfo(file.name)
            info.size = len(file.content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(file.content))
    # mtime=0: the same transmission packs to the same bytes, whatever the hour.
    return gzip.compress(raw.getvalue(), mtime=0)
