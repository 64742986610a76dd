"""Reading PES V2 files safely: PES_Aller flows, PES_ACQUIT acknowledgements, PES_Retour.

Every file is parsed by lxml with entities never resolved, no network, no DTD and the
default size guards (``huge_tree`` off), after a check of its encoding. A DOCTYPE or an
entity declaration is refused outright: PES has no use for them, and refusing is safer
than trusting each parser option to neutralise them. The schemas are the official PES V2
XSDs shipped in ``kanol_actes_pes/schemas/pes`` (see its ``ORIGIN.md``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

from lxml import etree

from kanol_actes_pes.pes.errors import (
    PesEncodingInvalid,
    PesNotPesAller,
    PesSchemaInvalid,
    PesXmlForbidden,
    PesXmlMalformed,
)
from kanol_common.xml import safe_parser

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas" / "pes"
PES_ALLER_XSD = SCHEMAS_DIR / "PES_V2" / "Rev0" / "PES_Aller.xsd"
PES_ACQUIT_XSD = SCHEMAS_DIR / "PES_V2" / "Rev0" / "PES_V2_Acquit_Autonome_V2.xsd"
PES_RETOUR_XSD = SCHEMAS_DIR / "PES_V2" / "RETOUR" / "Rev0" / "PES_Retour.xsd"

NS_ALLER = "http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/aller"
NS_ACQUIT = "http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/retour/v2"
NS_RETOUR = "http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/retour"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"

# PES files are ISO-8859-1 in practice; UTF-8 is what XML assumes without a declaration.
ALLOWED_ENCODINGS = {"iso-8859-1": "iso-8859-1", "iso8859-1": "iso-8859-1", "utf-8": "utf-8"}
MAX_SCHEMA_ERRORS = 20

_DECLARATION = re.compile(rb"^<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")
_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY")


@dataclass(frozen=True)
class SchemaError:
    line: int
    message: str


@dataclass(frozen=True)
class PesHeader:
    """What actes-pes reads of a flow: its envelope parameters and its ``EnTetePES``."""

    nom_fic: str
    typ_fic: str
    dte_str: date
    id_post: str
    id_coll: str
    cod_col: str
    cod_bud: str
    libelle_col_bud: str

    @property
    def siren(self) -> str:
        return self.id_coll[:9]


@dataclass(frozen=True)
class AcquitError:
    """One numbered error of a refusing acknowledgement."""

    number: int
    code: str
    label: str
    domaine: str
    piece: str | None


@dataclass(frozen=True)
class Acquit:
    """A ``PES_ACQUIT``: accepted when every ``ElementACQUIT`` says ``EtatAck`` 1."""

    nom_fic: str
    id_coll: str
    dte_str: date
    accepted: bool
    errors: tuple[AcquitError, ...]


@dataclass(frozen=True)
class RetourHeader:
    nom_fic: str
    id_coll: str
    dte_str: date


# -- Parsing -------------------------------------------------------------------------------


def declared_encoding(content: bytes) -> str:
    """The encoding the file declares, checked against what PES allows and its bytes."""
    match = _DECLARATION.match(content)
    declared = match.group(1).decode("ascii").lower() if match else "utf-8"
    encoding = ALLOWED_ENCODINGS.get(declared)
    if encoding is None:
        raise PesEncodingInvalid(
            f"The file declares the encoding {declared!r}; PES files are ISO-8859-1 or UTF-8"
        )
    if encoding == "utf-8":
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PesEncodingInvalid(
                f"The file is declared UTF-8 but byte {exc.start} is not UTF-8"
                " (an ISO-8859-1 file must say so in its XML declaration)"
            ) from exc
    return encoding


def parse_safely(content: bytes) -> etree._ElementTree:
    """Parse a PES file, refusing DTDs, entities, other encodings and malformed XML."""
    if not content.strip():
        raise PesXmlMalformed("The file is empty")
    declared_encoding(content)
    for construct in _FORBIDDEN:
        if construct in content:
            raise PesXmlForbidden(
                f"The file contains {construct.decode()}: DTDs and entity declarations are"
                " not allowed in PES flows and are never expanded"
            )
    try:
        root = etree.fromstring(content, safe_parser(keep_comments=True))
    except etree.XMLSyntaxError as exc:
        raise PesXmlMalformed(f"The file is not well-formed XML: {exc}") from exc
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise PesXmlForbidden("The file declares a DOCTYPE, which PES flows never do")
    return tree


# -- Schemas -------------------------------------------------------------------------------

_schemas = threading.local()


def _schema(path: Path) -> etree.XMLSchema:
    """The compiled schema, one per thread: lxml's validators are not shared across threads."""
    cache: dict[Path, etree.XMLSchema] | None = getattr(_schemas, "cache", None)
    if cache is None:
        cache = {}
        _schemas.cache = cache
    schema = cache.get(path)
    if schema is None:
        schema = etree.XMLSchema(etree.parse(str(path), etree.XMLParser(no_network=True)))
        cache[path] = schema
    return schema


def schema_errors(tree: etree._ElementTree, path: Path) -> list[SchemaError]:
    schema = _schema(path)
    if schema.validate(tree):
        return []
    return [
        SchemaError(line=error.line, message=error.message)
        for error in list(cast("Iterable[Any]", schema.error_log))[:MAX_SCHEMA_ERRORS]
    ]


def _ensure_valid(tree: etree._ElementTree, path: Path, what: str) -> None:
    errors = schema_errors(tree, path)
    if errors:
        first = errors[0]
        raise PesSchemaInvalid(
            f"The {what} is invalid against the PES V2 schema: line {first.line}: {first.message}",
            errors=[{"line": error.line, "message": error.message} for error in errors],
        )


# -- PES_Aller -----------------------------------------------------------------------------


def read_pes_aller(content: bytes) -> tuple[etree._ElementTree, PesHeader]:
    """Parse and validate a ``PES_Aller`` flow, and read its header."""
    tree = parse_safely(content)
    root = tree.getroot()
    if root.tag != f"{{{NS_ALLER}}}PES_Aller":
        raise PesNotPesAller(
            f"The root element is {root.tag}, not PES_Aller in the namespace {NS_ALLER}"
        )
    _ensure_valid(tree, PES_ALLER_XSD, "flow")
    return tree, read_header(root)


def _value(parent: etree._Element, path: str) -> str:
    element = parent.find(path)
    return "" if element is None else str(element.get("V", ""))


def read_header(root: etree._Element) -> PesHeader:
    """The header of a PES_Aller root; raises ValueError when ``DteStr`` is unreadable."""
    return PesHeader(
        nom_fic=_value(root, "Enveloppe/Parametres/NomFic"),
        typ_fic=_value(root, "Enveloppe/Parametres/TypFic"),
        dte_str=date.fromisoformat(_value(root, "EnTetePES/DteStr")),
        id_post=_value(root, "EnTetePES/IdPost"),
        id_coll=_value(root, "EnTetePES/IdColl"),
        cod_col=_value(root, "EnTetePES/CodCol"),
        cod_bud=_value(root, "EnTetePES/CodBud"),
        libelle_col_bud=_value(root, "EnTetePES/LibelleColBud"),
    )


# -- PES_ACQUIT and PES_Retour -------------------------------------------------------------


def read_acquit(content: bytes) -> Acquit:
    """Parse a ``PES_ACQUIT`` safely, and number its errors in document order.

    Not refused for breaking the schema: Hélios is the authority on its own answers, and
    real ones deviate from it (the DGFiP's sample KO acknowledgements carry ``CodCol`` 000,
    which the schema's pattern forbids); refusing one would leave its flow unanswered.
    """
    tree = parse_safely(content)
    root = tree.getroot()
    if root.tag != f"{{{NS_ACQUIT}}}PES_ACQUIT" or root.find("ACQUIT") is None:
        raise PesNotPesAller(f"The root element is {root.tag}, not PES_ACQUIT with ACQUIT")

    errors: list[AcquitError] = []
    accepted = True
    for element in root.iterfind("ACQUIT/ElementACQUIT"):
        domaine = _value(element, "DomaineAck")
        if _value(element, "EtatAck") == "1":
            continue
        accepted = False
        found = _element_errors(element, domaine, len(errors))
        if not found:
            found = [
                AcquitError(
                    len(errors) + 1, "ERREUR_AUTRE", "EtatAck 0 without Erreur", domaine, None
                )
            ]
        errors.extend(found)
    return Acquit(
        nom_fic=_value(root, "Enveloppe/Parametres/NomFic"),
        id_coll=_value(root, "EnTetePES/IdColl"),
        dte_str=date.fromisoformat(_value(root, "EnTetePES/DteStr")),
        accepted=accepted,
        errors=tuple(errors),
    )


def _element_errors(element: etree._Element, domaine: str, before: int) -> list[AcquitError]:
    found: list[AcquitError] = []

    def add(erreur: etree._Element, piece: str | None) -> None:
        found.append(
            AcquitError(
                number=before + len(found) + 1,
                code=_value(erreur, "NumAnoAck") or "ERREUR_AUTRE",
                label=_value(erreur, "LibelleAnoAck"),
                domaine=domaine,
                piece=piece,
            )
        )

    for erreur in element.iterfind("Erreur"):
        add(erreur, None)
    for detail in element.iterfind("DetailPiece"):
        piece = _value(detail, "NumPiece")
        for erreur in detail.iterfind("Erreur"):
            add(erreur, piece)
        for ligne in detail.iterfind("DetailLigne"):
            for erreur in ligne.iterfind("Erreur"):
                add(erreur, piece)
    return found


def read_retour(content: bytes) -> RetourHeader:
    """Parse a ``PES_Retour`` safely and read its header (not refused for the schema either)."""
    tree = parse_safely(content)
    root = tree.getroot()
    if root.tag != f"{{{NS_RETOUR}}}PES_Retour":
        raise PesNotPesAller(f"The root element is {root.tag}, not PES_Retour")
    return RetourHeader(
        nom_fic=_value(root, "Enveloppe/Parametres/NomFic"),
        id_coll=_value(root, "EnTetePES/IdColl"),
        dte_str=date.fromisoformat(_value(root, "EnTetePES/DteStr")),
    )
