"""What the simulated prefecture checks in a transmission, as the real chain does.

Two levels, as in @CTES: an archive the gateway cannot take at all (not a tar.gz, unsafe
names, an envelope or a message that does not validate against the schema) is refused
on the spot (:class:`ArchiveRefused`, a 4xx); a well-formed transmission whose content is
wrong (a missing or unreadable file, an id that does not add up, an acte already
transmitted) is taken, and answered later with an anomalie (message 1-3).

Anomalie codes are the simulator's own (the ministry's list is not public): 001 missing
file, 002 classification not up to date (as in the prefectures' own replies), 003
inconsistent identifiant, 004 unreadable document, 005 acte already transmitted, 099
simulated anomalie.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field

from lxml import etree
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from kanol_actes_pes.acte import Nature
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.actes_xml import INSEE_NS, ActesXmlError, qname

MAX_MEMBERS = 50
_FLAT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


class ArchiveRefused(Exception):
    """The gateway cannot take this archive; ``status`` is the HTTP answer."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_archive_bytes: int = 100 * 1024 * 1024
    max_file_bytes: int = 50 * 1024 * 1024
    max_total_bytes: int = 150 * 1024 * 1024


@dataclass
class Inspection:
    """A transmission the gateway took: its acte, and the anomalies found in it, if any."""

    siren: str
    departement: str
    identifiant_acte: str
    acte: etree._Element
    anomalies: list[tuple[str, str]] = field(default_factory=list)
    # The message's root: ``Acte`` for a dépôt (1-1), else Annulation, DemandeClassification,
    # PieceComplementaire... (messages after the dépôt, answered without an anomalie).
    kind: str = "Acte"


def read_archive(data: bytes, limits: Limits) -> dict[str, bytes]:
    """The files of a tar.gz, refusing links, folders, traversal and anything too big."""
    if len(data) > limits.max_archive_bytes:
        raise ArchiveRefused(f"the archive exceeds {limits.max_archive_bytes} bytes", 413)

    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                _check_member(member, files, limits)
                total += member.size
                if total > limits.max_total_bytes:
                    raise ArchiveRefused("the archive's files are too large once unpacked", 413)
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file always has content
                files[member.name] = extracted.read(member.size + 1)[: member.size]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveRefused(f"the transmission is not a readable tar.gz: {exc}", 400) from exc

    if not files:
        raise ArchiveRefused("the archive is empty")
    return files


def _check_member(member: tarfile.TarInfo, seen: dict[str, bytes], limits: Limits) -> None:
    if len(seen) >= MAX_MEMBERS:
        raise ArchiveRefused(f"the archive holds more than {MAX_MEMBERS} files")
    if not member.isreg():
        raise ArchiveRefused(f"the archive member {member.name!r} is not a regular file")
    if not _FLAT_NAME.fullmatch(member.name) or ".." in member.name:
        raise ArchiveRefused(
            f"the archive member {member.name!r} is not a plain file name (no folders, no ..)"
        )
    if member.name in seen:
        raise ArchiveRefused(f"the archive holds {member.name!r} twice")
    if member.size > limits.max_file_bytes:
        raise ArchiveRefused(f"{member.name} exceeds {limits.max_file_bytes} bytes", 413)


def inspect(files: dict[str, bytes]) -> Inspection:
    """Validate the envelope and its message, then look for anomalies in their content."""
    enveloppe_name = _single_enveloppe(files)
    enveloppe = _parse(enveloppe_name, files[enveloppe_name], "EnveloppeCLMISILL")
    idcl = enveloppe.find(f"{qname('Emetteur')}/{qname('IDCL')}")
    assert idcl is not None  # required by the schema
    siren = idcl.get(qname("SIREN", INSEE_NS), "")
    departement = idcl.get(qname("Departement"), "")

    message_name = _single_message(enveloppe, files)
    acte = _parse(message_name, files[message_name], None)
    kind = actes_xml.local_name(acte)
    if kind != "Acte":
        return _inspect_message(siren, departement, kind, acte, message_name, files)
    identifiant = _identifiant(departement, siren, acte)
    inspection = Inspection(siren, departement, identifiant, acte)

    if not message_name.startswith(f"{identifiant}-1-1_"):
        inspection.anomalies.append(
            ("003", f"Le message {message_name} ne porte pas l'identifiant {identifiant}")
        )
    _check_documents(inspection, acte, files, {enveloppe_name, message_name})
    return inspection


def _single_enveloppe(files: dict[str, bytes]) -> str:
    names = [name for name in files if name.startswith("EACT--") and name.endswith(".xml")]
    if len(names) != 1:
        raise ArchiveRefused(
            f"the archive must hold exactly one envelope EACT--*.xml, it holds {len(names)}"
        )
    return names[0]


def _single_message(enveloppe: etree._Element, files: dict[str, bytes]) -> str:
    names = [
        element.text or ""
        for element in enveloppe.iterfind(
            f"{qname('FormulairesEnvoyes')}/{qname('Formulaire')}/{qname('NomFichier')}"
        )
    ]
    if len(names) != 1:
        raise ArchiveRefused(f"the envelope must list exactly one message, it lists {len(names)}")
    if names[0] not in files:
        raise ArchiveRefused(f"the envelope lists {names[0]}, which the archive does not hold")
    return names[0]


SENT_BY_AUTHORITY = frozenset(
    {
        "Annulation",
        "DemandeClassification",
        "ReponseCourrierSimple",
        "RefusPieceComplementaire",
        "PieceComplementaire",
        "RejetLettreObservations",
        "ReponseLettreObservations",
        "ARDemandePieceComplementaire",
        "ARLettreObservations",
    }
)


def _inspect_message(
    siren: str,
    departement: str,
    kind: str,
    root: etree._Element,
    name: str,
    files: dict[str, bytes],
) -> Inspection:
    """A message after the dépôt: every file it names is in the archive, and nothing else."""
    if kind not in SENT_BY_AUTHORITY:
        raise ArchiveRefused(f"{name}: a {kind} is not a message an authority sends")
    identifiant = root.get(qname("IDActe")) or ""
    named = {(element.text or "").strip() for element in root.iter(qname("NomFichier"))}
    missing = sorted(named - set(files))
    if missing:
        raise ArchiveRefused(f"{name} names files the archive does not hold: {missing}")
    for file_name in named:
        if not _is_pdf(files[file_name]):
            raise ArchiveRefused(f"{file_name} is not a readable PDF")
    return Inspection(siren, departement, identifiant, root, kind=kind)


def _parse(name: str, data: bytes, expected_root: str | None) -> etree._Element:
    try:
        root = actes_xml.parse(data)
    except ActesXmlError as exc:
        raise ArchiveRefused(f"{name}: {exc}") from exc
    if expected_root is not None and actes_xml.local_name(root) != expected_root:
        raise ArchiveRefused(
            f"{name}: a {actes_xml.local_name(root)} where a {expected_root} was expected"
            " (the simulator handles the dépôt of an acte, message 1-1, only)"
        )
    return root


def _identifiant(departement: str, siren: str, acte: etree._Element) -> str:
    decision = (acte.get(qname("Date")) or "").replace("-", "")
    numero = acte.get(qname("NumeroInterne")) or ""
    try:
        code = Nature(int(acte.get(qname("CodeNatureActe")) or "0")).code
    except ValueError:
        code = "XX"
    return f"{departement}-{siren}-{decision}-{numero}-{code}"


def _check_documents(
    inspection: Inspection, acte: etree._Element, files: dict[str, bytes], declared: set[str]
) -> None:
    main = acte.findtext(f"{qname('Document')}/{qname('NomFichier')}") or ""
    annexes = [
        element.text or ""
        for element in acte.iterfind(f"{qname('Annexes')}/{qname('Annexe')}/{qname('NomFichier')}")
    ]
    annexes_element = acte.find(qname("Annexes"))
    assert annexes_element is not None  # required by the schema
    if int(annexes_element.get(qname("Nombre"), "0")) != len(annexes):
        inspection.anomalies.append(("001", "Le nombre d'annexes déclaré est inexact"))
    if inspection.identifiant_acte not in main:
        inspection.anomalies.append(
            ("003", f"Le document {main} ne porte pas l'identifiant {inspection.identifiant_acte}")
        )

    for name in [main, *annexes]:
        declared.add(name)
        if name not in files:
            inspection.anomalies.append(("001", f"Le fichier {name} est absent de l'envoi"))
        elif not _is_pdf(files[name]):
            inspection.anomalies.append(("004", f"Le fichier {name} n'est pas un PDF lisible"))
    for name in sorted(set(files) - declared):
        inspection.anomalies.append(("001", f"Le fichier {name} n'est déclaré par aucun message"))


def _is_pdf(data: bytes) -> bool:
    if not data.startswith(b"%PDF-"):
        return False
    try:
        return len(PdfReader(io.BytesIO(data)).pages) > 0
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        return False
