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
