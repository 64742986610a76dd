"""The files the Hélios simulator writes: PES_ACQUIT acknowledgements and PES_Retour.

Both in the official shapes (validated against the PES V2 schemas before they leave), in
ISO-8859-1 as Hélios writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from lxml import etree

from kanol_actes_pes.pes.pes_xml import (
    NS_ACQUIT,
    NS_RETOUR,
    PES_ACQUIT_XSD,
    PES_RETOUR_XSD,
    PesHeader,
    schema_errors,
)

# DomaineAck, as Hélios numbers them.
DOMAINE_TECHNIQUE = "1"
DOMAINE_CERTIFICAT = "3"
DOMAINE_PJ = "4"
DOMAINE_DEPENSE = "5"
DOMAINE_RECETTE = "6"


@dataclass(frozen=True)
class Erreur:
    code: str
    label: str


@dataclass(frozen=True)
class Piece:
    num_piece: str
    erreurs: tuple[Erreur, ...]


@dataclass(frozen=True)
class Element:
    """One ``ElementACQUIT``: a domain's verdict on the file, a bordereau or a PJ."""

    domaine: str
    accepted: bool
    num_bord: str | None = None
    exercice_bord: str | None = None
    id_unique: str | None = None
    erreurs: tuple[Erreur, ...] = ()
    pieces: tuple[Piece, ...] = field(default=())


def _v(parent: etree._Element, tag: str, value: str) -> etree._Element:
    return etree.SubElement(parent, tag, {"V": value})


def _envelope(root: etree._Element, typ_fic: str, nom_fic: str, version: str) -> None:
    envelope = etree.SubElement(root, "Enveloppe")
    parametres = etree.SubElement(envelope, "Parametres")
    _v(parametres, "Version", version)
    _v(parametres, "TypFic", typ_fic)
    _v(parametres, "NomFic", nom_fic)
    emetteur = etree.SubElement(envelope, "Emetteur")
    _v(emetteur, "Sigle", "HELIOS")
    _v(emetteur, "Adresse", "Simulateur Kanol")


def _serialise(root: etree._Element) -> bytes:
    return _xml_bytes(root)


def acquit(header: PesHeader, elements: Sequence[Element], day: date) -> bytes:
    """A ``PES_ACQUIT`` of the flow ``header`` describes; raises if it breaks the schema."""
    root = etree.Element(f"{{{NS_ACQUIT}}}PES_ACQUIT", nsmap={"n": NS_ACQUIT})
    _envelope(root, header.typ_fic or "PESALR1", header.nom_fic, "2")
    entete = etree.SubElement(root, "EnTetePES")
    _v(entete, "DteStr", day.isoformat())
    _v(entete, "IdPost", header.id_post)
    _v(entete, "IdColl", header.id_coll)
    _v(entete, "CodCol", header.cod_col)
    _v(entete, "CodBud", header.cod_bud)
    _v(entete, "LibelleColBud", header.libelle_col_bud)
    body = etree.SubElement(root, "ACQUIT")
    _v(etree.SubElement(body, "EnTeteAcquit"), "IdVer", "2")
    for element in elements:
        node = etree.SubElement(body, "ElementACQUIT")
        _v(node, "DomaineAck", element.domaine)
        _v(node, "EtatAck", "1" if element.accepted else "0")
        if element.id_unique is not None:
            _v(node, "IdUnique", element.id_unique)
        else:
            if element.num_bord is not None:
                _v(node, "NumBord", element.num_bord)
            if element.exercice_bord is not None:
                _v(node, "ExerciceBord", element.exercice_bord)
        for erreur in element.erreurs:
            _erreur(node, erreur)
        for piece in element.pieces:
            detail = etree.SubElement(node, "DetailPiece")
            _v(detail, "NumPiece", piece.num_piece)
            for erreur in piece.erreurs:
                _erreur(detail, erreur)
    content = _serialise(root)
    _ensure_valid(content, "PES_ACQUIT")
    return content


def _erreur(parent: etree._Element, erreur: Erreur) -> None:
    node = etree.SubElement(parent, "Erreur")
    _v(node, "NumAnoAck", erreur.code)
    _v(node, "LibelleAnoAck", erreur.label[:500])


def retour(header: PesHeader, nom_fic: str, day: date) -> bytes:
    """A ``PES_Retour`` (dépense, periodic) for the collectivité of ``header``."""
    root = etree.Element(f"{{{NS_RETOUR}}}PES_Retour", nsmap={"n": NS_RETOUR})
    _envelope(root, "PES2R_DEP", nom_fic, "1")
    entete = etree.SubElement(root, "EnTetePES")
    _v(entete, "DteStr", day.isoformat())
    _v(entete, "IdPost", header.id_post)
    _v(entete, "IdColl", header.id_coll)
    _v(entete, "CodColl", header.cod_col)
    _v(entete, "CodBud", header.cod_bud)
    content = _serialise(root)
    _ensure_valid(content, "PES_Retour")
    return content


def _ensure_valid(content: bytes, what: str) -> None:
    path = PES_ACQUIT_XSD if what == "PES_ACQUIT" else PES_RETOUR_XSD
    tree = etree.fromstring(content, etree.XMLParser(resolve_entities=False)).getroottree()
    errors = schema_errors(tree, path)
    if errors:
        raise ValueError(f"the simulator wrote an invalid {what}: {errors[0].message}")


def _xml_bytes(root: etree._Element) -> bytes:
    data = etree.tostring(root.getroottree(), xml_declaration=True, encoding="ISO-8859-1")
    assert isinstance(data, bytes)
    return data
