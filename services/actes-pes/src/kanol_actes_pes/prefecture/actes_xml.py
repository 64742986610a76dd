"""ACTES v1.1 XML: building the envelope and the acte message, reading the prefecture's replies.

Every document is written in ISO-8859-1 as @CTES requires (a character outside Latin-1
becomes a character reference, so nothing is lost), and checked against the official
schema: a document we build that does not validate is a bug and raises
:class:`ActesXmlError`; a document we receive that does not validate is refused before
anything else reads it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from itertools import islice
from typing import Any, Final, cast

from lxml import etree

from kanol_actes_pes.acte import Matiere, Nature
from kanol_common.xml import safe_parser

ACTES_NS: Final = "http://www.interieur.gouv.fr/ACTES#v1.1-20040216"
INSEE_NS: Final = "http://xml.insee.fr/schema"
NSMAP: Final = {"actes": ACTES_NS, "insee": INSEE_NS}
ENCODING: Final = "ISO-8859-1"
LATIN_1_NAMES: Final = frozenset({"ISO-8859-1", "ISO8859-1", "LATIN-1", "LATIN1", "L1"})
# Return messages are a few kilobytes; a classification about fifty. Anything far larger
# is refused before the parser sees it.
MAX_XML_BYTES: Final = 5 * 1024 * 1024

_SCHEMA_PACKAGE = "kanol_actes_pes.schemas.actes"
_SCHEMA_ENTRY = "actesv1_1.xsd"


class ActesXmlError(ValueError):
    """An ACTES document that cannot be read or does not match the schema."""


def qname(local: str, namespace: str = ACTES_NS) -> str:
    return f"{{{namespace}}}{local}"


@functools.cache
def actes_schema() -> etree.XMLSchema:
    """The ACTES v1.1 schema, loaded once from the copy shipped in this package."""
    entry = resources.files(_SCHEMA_PACKAGE).joinpath(_SCHEMA_ENTRY)
    with resources.as_file(entry) as path:
        # The entry imports siret.xsd by a relative location: parse from the file path so
        # that libxml2 resolves it in the same folder, never over the network.
        schema_doc = etree.parse(str(path), safe_parser())
        return etree.XMLSchema(schema_doc)


def validate(root: etree._Element) -> None:
    """Raise :class:`ActesXmlError` with the schema's first errors unless ``root`` is valid."""
    schema = actes_schema()
    if schema.validate(root):
        return
    # lxml's stubs do not declare the log iterable; its entries have line and message.
    entries = cast("Iterable[Any]", schema.error_log)
    errors = "; ".join(f"line {entry.line}: {entry.message}" for entry in islice(entries, 5))
    raise ActesXmlError(f"not valid against the ACTES v1.1 schema: {errors}")


def parse(data: bytes) -> etree._Element:
    """Parse untrusted ACTES XML safely and validate it; returns the root element."""
    if len(data) > MAX_XML_BYTES:
        raise ActesXmlError(f"the document is larger than {MAX_XML_BYTES} bytes")
    try:
        tree = etree.ElementTree(etree.fromstring(data, safe_parser()))
    except etree.XMLSyntaxError as exc:
        raise ActesXmlError(f"not well-formed XML: {exc}") from exc

    if tree.docinfo.internalDTD is not None:
        # ACTES documents never carry a DTD; one here can only be an entity trick.
        raise ActesXmlError("a document type declaration (DTD) is not accepted")
    declared = (tree.docinfo.encoding or "UTF-8").upper().replace("_", "-")
    if declared not in LATIN_1_NAMES:
        # @CTES files are ISO-8859-1; another encoding is the classic UTF-8 accident.
        raise ActesXmlError(f"ACTES documents are encoded in ISO-8859-1, this one in {declared}")
    root = tree.getroot()
    validate(root)
    return root


def serialize(root: etree._Element) -> bytes:
    validate(root)
    data = etree.tostring(root, xml_declaration=True, encoding=ENCODING, pretty_print=True)
    assert isinstance(data, bytes)  # with an encoding, lxml always returns bytes
    return data


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


# -- What a collectivité sends: the envelope and the acte (message 1-1) ---------------------


@dataclass(frozen=True)
class Referent:
    nom: str | None = None
    telephone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Emetteur:
    siren: str
    departement: str
    arrondissement: int
    nature_collectivite: str
    referent: Referent | None = None


def build_enveloppe(
    emetteur: Emetteur, adresses_retour: Sequence[str], formulaires: Sequence[str]
) -> bytes:
    """The transmission envelope (``EnveloppeCLMISILL``) listing the messages it carries."""
    if not adresses_retour or not formulaires:
        raise ActesXmlError("an envelope needs a return address and at least one message")

    root = etree.Element(qname("EnveloppeCLMISILL"), nsmap=NSMAP)
    sender = etree.SubElement(root, qname("Emetteur"))
    etree.SubElement(
        sender,
        qname("IDCL"),
        {
            qname("SIREN", INSEE_NS): emetteur.siren,
            qname("Departement"): emetteur.departement,
            qname("Arrondissement"): str(emetteur.arrondissement),
            qname("Nature"): emetteur.nature_collectivite,
        },
    )
    if emetteur.referent is not None:
        _add_referent(sender, emetteur.referent)

    addresses = etree.SubElement(root, qname("AdressesRetour"))
    for address in adresses_retour:
        etree.SubElement(addresses, qname("Email")).text = address

    forms = etree.SubElement(root, qname("FormulairesEnvoyes"))
    for filename in formulaires:
        form = etree.SubElement(forms, qname("Formulaire"))
        etree.SubElement(form, qname("NomFichier")).text = filename
    return serialize(root)


def _add_referent(parent: etree._Element, referent: Referent) -> None:
    element = etree.SubElement(parent, qname("Referent"))
    for tag, value in (
        ("Nom", referent.nom),
        ("Telephone", referent.telephone),
        ("Email", referent.email),
    ):
        if value:
            etree.SubElement(element, qname(tag)).text = value


@dataclass(frozen=True)
class ActeMessage:
    """The content of an ``Acte`` message (1-1)."""

    date_decision: date
    numero_interne: str
    nature: Nature
    matiere: Matiere
    objet: str
    classification_date: date
    document: str
    annexes: tuple[str, ...] = ()


def build_acte(message: ActeMessage) -> bytes:
    """The ``Acte`` message (1-1) naming the acte's main document and its annexes."""
    root = etree.Element(
        qname("Acte"),
        {
            qname("Date"): message.date_decision.isoformat(),
            qname("NumeroInterne"): message.numero_interne,
            qname("CodeNatureActe"): str(int(message.nature)),
        },
        nsmap=NSMAP,
    )
    for level, code in enumerate(message.matiere.levels, start=1):
        etree.SubElement(root, qname(f"CodeMatiere{level}"), {qname("CodeMatiere"): str(code)})
    etree.SubElement(root, qname("Objet")).text = message.objet
    classification = etree.SubElement(root, qname("ClassificationDateVersion"))
    classification.text = message.classification_date.isoformat()

    document = etree.SubElement(root, qname("Document"))
    etree.SubElement(document, qname("NomFichier")).text = message.document
    annexes = etree.SubElement(root, qname("Annexes"), {qname("Nombre"): str(len(message.annexes))})
    for filename in message.annexes:
        annexe = etree.SubElement(annexes, qname("Annexe"))
        etree.SubElement(annexe, qname("NomFichier")).text = filename
    # Empty: the acte is transmitted whole, nothing follows on paper.
    etree.SubElement(root, qname("DocumentPapier"))
    return serialize(root)


# -- What the prefecture sends back ---------------------------------------------------------


@dataclass(frozen=True)
class ActeRecu:
    """The acte as the prefecture echoes it in its replies."""

    date_decision: date
    numero_interne: str
    nature: int
    document: str | None


@dataclass(frozen=True)
class AccuseReception:
    """An ``ARActe`` (message 1-2): the prefecture received the acte."""

    identifiant_acte: str
    date_reception: date
    acte: ActeRecu
    classification_date_en_cours: date


@dataclass(frozen=True)
class Anomalie:
    """An ``AnomalieActe`` (message 1-3): the prefecture refused the acte, and why."""

    date_anomalie: date
    nature: str
    detail: str
    acte: ActeRecu
    classification_date_en_cours: date


@dataclass(frozen=True)
class AnomalieEnveloppe:
    """An ``AnomalieEnveloppe``: the prefecture could not take the transmission's envelope.

    ``identifiant_acte`` is read from the name of the message the envelope carried.
    """

    date_anomalie: date
    nature: str
    detail: str
    identifiant_acte: str | None


@dataclass(frozen=True)
class CourrierPrefecture:
    """A letter of the prefecture about an acte: 2-1, 3-1, 4-1 (and 5-1, without a date).

    ``kind`` is the root element (``CourrierSimple``, ``DemandePieceComplementaire``,
    ``LettreObservations``, ``DefereTA``); ``texte`` its free text (DescriptionPieces,
    Motif, NatureIllegalite); ``fichiers`` the files it names, in order.
    """

    kind: str
    code: str
    identifiant_acte: str
    date_courrier: date | None
    texte: str
    fichiers: tuple[str, ...]
    date_depot: date | None = None


@dataclass(frozen=True)
class AccuseReponse:
    """The prefecture acknowledged an answer of the authority: 3-5 or 4-5."""

    kind: str
    code: str
    identifiant_acte: str
    date_reception: date
    date_courrier: date


@dataclass(frozen=True)
class AccuseAnnulation:
    """An ``ARAnnulation`` (6-2): the prefecture took the cancellation of the acte."""

    identifiant_acte: str
    date_reception: date


@dataclass(frozen=True)
class ClassificationInchangee:
    """A ``ReponseClassificationSansChangement`` (7-3): the classification held is current."""

    date_classification: date


@dataclass(frozen=True)
class ClassificationRecue:
    """A ``RetourClassification`` (7-2): the prefecture's whole current classification."""

    date_classification: date
    root: etree._Element


ReturnMessageContent = (
    AccuseReception
    | Anomalie
    | AnomalieEnveloppe
    | CourrierPrefecture
    | AccuseReponse
    | AccuseAnnulation
    | ClassificationInchangee
    | ClassificationRecue
)

COURRIER_CODES: Final = {
    "CourrierSimple": "2-1",
    "DemandePieceComplementaire": "3-1",
    "LettreObservations": "4-1",
    "DefereTA": "5-1",
}
ACCUSE_REPONSE_CODES: Final = {
    "ARPieceComplementaire": "3-5",
    "ARReponseRejetLettreObservations": "4-5",
}


def read_return_message(data: bytes) -> ReturnMessageContent:
    """Parse and validate a return message of the prefecture (1-2 to 7-3)."""
    root = parse(data)
    kind = local_name(root)
    if kind == "ARActe":
        return _read_accuse_reception(root)
    if kind == "AnomalieActe":
        return _read_anomalie(root)
    if kind == "AnomalieEnveloppe":
        return _read_anomalie_enveloppe(root)
    if kind in COURRIER_CODES:
        return _read_courrier(root, kind)
    if kind in ACCUSE_REPONSE_CODES:
        return _read_accuse_reponse(root, kind)
    if kind == "ARAnnulation":
        return AccuseAnnulation(
            identifiant_acte=_attribute(root, "IDActe"),
            date_reception=date.fromisoformat(_attribute(root, "DateReception")),
        )
    if kind == "ReponseClassificationSansChangement":
        return ClassificationInchangee(_date_of(_child(root, "DateClassification")))
    if kind == "RetourClassification":
        return ClassificationRecue(_date_of(_child(root, "DateClassification")), root)
    raise ActesXmlError(f"the message {kind} is not one the prefecture sends")


def _read_accuse_reception(root: etree._Element) -> AccuseReception:
    return AccuseReception(
        identifiant_acte=_attribute(root, "IDActe"),
        date_reception=date.fromisoformat(_attribute(root, "DateReception")),
        acte=_read_acte_recu(_child(root, "ActeRecu")),
        classification_date_en_cours=_date_of(_child(root, "ClassificationDateVersionEnCours")),
    )


def _read_anomalie(root: etree._Element) -> Anomalie:
    detail = root.find(qname("Detail"))
    return Anomalie(
        date_anomalie=_date_of(_child(root, "Date")),
        nature=(_child(root, "Nature").text or "").strip(),
        detail=(detail.text or "").strip() if detail is not None else "",
        acte=_read_acte_recu(_child(root, "ActeRecu")),
        classification_date_en_cours=_date_of(_child(root, "ClassificationDateVersionEnCours")),
    )


_MESSAGE_NAME = re.compile(r"^(?P<identifiant>.+)-[0-9]+-[0-9]+_[0-9]+\.xml$")


def _read_anomalie_enveloppe(root: etree._Element) -> AnomalieEnveloppe:
    detail = root.find(qname("Detail"))
    names = _file_names(
        root, f"{qname('EnveloppeRecue')}/{qname('FormulairesEnvoyes')}/{qname('Formulaire')}"
    )
    matched = _MESSAGE_NAME.match(names[0]) if names else None
    return AnomalieEnveloppe(
        date_anomalie=_date_of(_child(root, "Date")),
        nature=(_child(root, "Nature").text or "").strip(),
        detail=(detail.text or "").strip() if detail is not None else "",
        identifiant_acte=matched.group("identifiant") if matched else None,
    )


def _read_courrier(root: etree._Element, kind: str) -> CourrierPrefecture:
    if kind == "DefereTA":
        return CourrierPrefecture(
            kind=kind,
            code=COURRIER_CODES[kind],
            identifiant_acte=_attribute(root, "IDActe"),
            date_courrier=None,
            texte=(_child(root, "NatureIllegalite").text or "").strip(),
            fichiers=_file_names(root, f"{qname('PiecesJointes')}/{qname('PieceJointe')}"),
            date_depot=_date_of(_child(root, "DateDepot")),
        )
    text_element = {
        "DemandePieceComplementaire": "DescriptionPieces",
        "LettreObservations": "Motif",
    }
    texte = ""
    if kind in text_element:
        texte = (_child(root, text_element[kind]).text or "").strip()
    return CourrierPrefecture(
        kind=kind,
        code=COURRIER_CODES[kind],
        identifiant_acte=_attribute(root, "IDActe"),
        date_courrier=date.fromisoformat(root.get(qname("DateCourrierPref")) or ""),
        texte=texte,
        fichiers=_file_names(root, qname("Document")),
    )


def _read_accuse_reponse(root: etree._Element, kind: str) -> AccuseReponse:
    infos = _child(root, "InfosCourrierPref")
    return AccuseReponse(
        kind=kind,
        code=ACCUSE_REPONSE_CODES[kind],
        identifiant_acte=_attribute(infos, "IDActe"),
        date_reception=date.fromisoformat(root.get(qname("DateReception")) or ""),
        date_courrier=date.fromisoformat(infos.get(qname("DateCourrierPref")) or ""),
    )


def _file_names(root: etree._Element, path: str) -> tuple[str, ...]:
    return tuple(
        (element.findtext(qname("NomFichier")) or "").strip() for element in root.iterfind(path)
    )


def _read_acte_recu(element: etree._Element) -> ActeRecu:
    name = element.find(f"{qname('Document')}/{qname('NomFichier')}")
    return ActeRecu(
        date_decision=date.fromisoformat(_attribute(element, "Date")),
        numero_interne=_attribute(element, "NumeroInterne"),
        nature=int(_attribute(element, "CodeNatureActe")),
        document=name.text if name is not None else None,
    )


def _child(parent: etree._Element, local: str) -> etree._Element:
    child = parent.find(qname(local))
    if child is None:
        raise ActesXmlError(f"{local_name(parent)} has no {local}")
    return child


def _attribute(element: etree._Element, local: str) -> str:
    value = element.get(qname(local))
    if value is None:
        raise ActesXmlError(f"{local_name(element)} has no attribute {local}")
    return value


def _date_of(element: etree._Element) -> date:
    return date.fromisoformat((element.text or "").strip())


# -- What the authority sends besides the acte: cancellation, answers, classification ------

# The authority's answers to a letter of the prefecture, by the answer's code.
ANSWER_KINDS: Final = {
    "2-2": "ReponseCourrierSimple",
    "3-3": "RefusPieceComplementaire",
    "3-4": "PieceComplementaire",
    "4-3": "RejetLettreObservations",
    "4-4": "ReponseLettreObservations",
}


def build_annulation(identifiant_acte: str) -> bytes:
    """The ``Annulation`` message (6-1): cancel the transmission of an acte."""
    root = etree.Element(qname("Annulation"), {qname("IDActe"): identifiant_acte}, nsmap=NSMAP)
    return serialize(root)


def build_demande_classification(held: date | None) -> bytes:
    """The ``DemandeClassification`` message (7-1), naming the version held, if any."""
    root = etree.Element(qname("DemandeClassification"), nsmap=NSMAP)
    if held is not None:
        etree.SubElement(root, qname("DateClassification")).text = held.isoformat()
    return serialize(root)


def build_answer(
    code: str, identifiant_acte: str, date_courrier: date, fichiers: Sequence[str]
) -> bytes:
    """An answer of the authority to a letter of the prefecture (2-2, 3-3, 3-4, 4-3, 4-4)."""
    kind = ANSWER_KINDS.get(code)
    if kind is None:
        raise ActesXmlError(f"{code} is not an answer of the authority")
    if not fichiers:
        raise ActesXmlError(f"an answer {code} needs at least one file")
    root = etree.Element(
        qname(kind),
        {qname("IDActe"): identifiant_acte, qname("DateCourrierPref"): date_courrier.isoformat()},
        nsmap=NSMAP,
    )
    parent = etree.SubElement(root, qname("Documents")) if kind == "PieceComplementaire" else root
    names = fichiers if kind == "PieceComplementaire" else fichiers[:1]
    for name in names:
        document = etree.SubElement(parent, qname("Document"))
        etree.SubElement(document, qname("NomFichier")).text = name
    return serialize(root)
