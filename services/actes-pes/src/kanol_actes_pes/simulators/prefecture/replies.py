"""The replies the simulated prefecture writes: ARActe (1-2) and AnomalieActe (1-3).

Both echo the acte as received (``ActeRecu``) and are validated against the ACTES schema
like any document Kanol builds.
"""

from __future__ import annotations

import copy
from datetime import date

from lxml import etree

from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.actes_xml import NSMAP, qname


def accuse_reception(
    acte: etree._Element, identifiant_acte: str, date_reception: date, classification: date
) -> bytes:
    root = etree.Element(
        qname("ARActe"),
        {qname("IDActe"): identifiant_acte, qname("DateReception"): date_reception.isoformat()},
        nsmap=NSMAP,
    )
    root.append(_acte_recu(acte))
    etree.SubElement(
        root, qname("ClassificationDateVersionEnCours")
    ).text = classification.isoformat()
    return actes_xml.serialize(root)


def anomalie(
    acte: etree._Element, nature: str, detail: str, day: date, classification: date
) -> bytes:
    root = etree.Element(qname("AnomalieActe"), nsmap=NSMAP)
    etree.SubElement(root, qname("Date")).text = day.isoformat()
    etree.SubElement(root, qname("Nature")).text = nature
    etree.SubElement(root, qname("Detail")).text = detail
    root.append(_acte_recu(acte))
    etree.SubElement(
        root, qname("ClassificationDateVersionEnCours")
    ).text = classification.isoformat()
    return actes_xml.serialize(root)


def _acte_recu(acte: etree._Element) -> etree._Element:
    echoed = copy.deepcopy(acte)
    echoed.tag = qname("ActeRecu")
    return echoed


def courrier(
    kind: str,
    identifiant_acte: str,
    day: date,
    texte: str,
    fichiers: list[str],
) -> bytes:
    """A letter of the prefecture: CourrierSimple (2-1), DemandePieceComplementaire (3-1),
    LettreObservations (4-1) or DefereTA (5-1)."""
    if kind == "DefereTA":
        root = etree.Element(qname("DefereTA"), {qname("IDActe"): identifiant_acte}, nsmap=NSMAP)
        etree.SubElement(root, qname("DateDepot")).text = day.isoformat()
        etree.SubElement(root, qname("NatureIllegalite")).text = texte
        pieces = etree.SubElement(root, qname("PiecesJointes"))
        for name in fichiers:
            piece = etree.SubElement(pieces, qname("PieceJointe"))
            etree.SubElement(piece, qname("NomFichier")).text = name
        return actes_xml.serialize(root)
    root = etree.Element(
        qname(kind),
        {qname("IDActe"): identifiant_acte, qname("DateCourrierPref"): day.isoformat()},
        nsmap=NSMAP,
    )
    text_element = {
        "DemandePieceComplementaire": "DescriptionPieces",
        "LettreObservations": "Motif",
    }
    if kind in text_element:
        etree.SubElement(root, qname(text_element[kind])).text = texte
    document = etree.SubElement(root, qname("Document"))
    etree.SubElement(document, qname("NomFichier")).text = fichiers[0]
    return actes_xml.serialize(root)


def accuse_reponse(kind: str, identifiant_acte: str, date_courrier: str, day: date) -> bytes:
    """ARPieceComplementaire (3-5) or ARReponseRejetLettreObservations (4-5)."""
    root = etree.Element(qname(kind), {qname("DateReception"): day.isoformat()}, nsmap=NSMAP)
    etree.SubElement(
        root,
        qname("InfosCourrierPref"),
        {qname("IDActe"): identifiant_acte, qname("DateCourrierPref"): date_courrier},
    )
    return actes_xml.serialize(root)


def accuse_annulation(identifiant_acte: str, day: date) -> bytes:
    root = etree.Element(
        qname("ARAnnulation"),
        {qname("IDActe"): identifiant_acte, qname("DateReception"): day.isoformat()},
        nsmap=NSMAP,
    )
    return actes_xml.serialize(root)


def classification_inchangee(day: date) -> bytes:
    root = etree.Element(qname("ReponseClassificationSansChangement"), nsmap=NSMAP)
    etree.SubElement(root, qname("DateClassification")).text = day.isoformat()
    return actes_xml.serialize(root)
