"""The ACTES formats: what Kanol builds validates, what it reads is checked, the domain rules."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from datetime import date
from importlib import resources

import pytest
from lxml import etree

from kanol_actes_pes.acte import (
    ActeState,
    IllegalTransition,
    Matiere,
    Nature,
    ensure_transition,
    identifiant_acte,
)
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.actes_xml import ActesXmlError, qname
from kanol_actes_pes.prefecture.transmission import ActeToTransmit, build_archive
from kanol_actes_pes.testing import make_pdf

from .conftest import DATA, SIREN

EMETTEUR = actes_xml.Emetteur(
    siren=SIREN,
    departement="035",
    arrondissement=1,
    nature_collectivite="31",
    referent=actes_xml.Referent(nom="Service des assemblées", email="assemblees@ville.fr"),
)
ORIGIN_CHECKSUMS = {
    "actesv1_1.xsd": "099fc71ac21c38dd05010080dab19f8236438631504f6cd1a162d3e5f5bf4542",
    "siret.xsd": "837a9c085c3639cbb9afb75cb355654f35fbfe37a69e1bbc3376b3de119e8543",
    "insee-commun.xsd": "f6e438d922da412c849a1125cc406ed25ae36c76866a3b65dbd1651c9a9eb651",
}


def acte_to_transmit(**overrides: object) -> ActeToTransmit:
    values: dict[str, object] = {
        "identifiant_acte": f"035-{SIREN}-20240312-2024_45-DE",
        "emetteur": EMETTEUR,
        "adresses_retour": ("actes@ville.fr",),
        "date_decision": date(2024, 3, 12),
        "numero_interne": "2024_45",
        "nature": Nature.DELIBERATION,
        "matiere": Matiere.parse("7.1.3"),
        "objet": "Budget primitif – taux d’imposition, œuvres « sociales »",
        "classification_date": date(2024, 1, 1),
        "document": make_pdf(),
    }
    values.update(overrides)
    return ActeToTransmit(**values)  # type: ignore[arg-type]


def test_the_shipped_schemas_are_the_published_ones() -> None:
    folder = resources.files("kanol_actes_pes.schemas.actes")
    for name, checksum in ORIGIN_CHECKSUMS.items():
        assert hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest() == checksum
    assert "84762c544b2c3d6b17edffb435aebfd3489ba1e8" in folder.joinpath("ORIGIN.md").read_text()


def test_a_transmission_packs_a_valid_envelope_message_and_pdf() -> None:
    acte = acte_to_transmit()

    archive = build_archive(acte, transmission_id="abc", number=42, day=date(2024, 3, 13))

    assert archive.filename == f"EACT--{SIREN}--20240313-42.tar.gz"
    assert archive.enveloppe.name == f"EACT--{SIREN}--20240313-42.xml"
    assert archive.message.name == f"035-{SIREN}-20240312-2024_45-DE-1-1_0.xml"
    assert archive.documents[0].name == f"99_DE-035-{SIREN}-20240312-2024_45-DE-1-1_1.pdf"
    assert archive.idempotency_key == f"035-{SIREN}-20240312-2024_45-DE/abc"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        members = {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar
        }
    assert members == {
        archive.enveloppe.name: archive.enveloppe.content,
        archive.message.name: archive.message.content,
        archive.documents[0].name: acte.document,
    }

    enveloppe = actes_xml.parse(archive.enveloppe.content)
    message = actes_xml.parse(archive.message.content)
    assert archive.message.content.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>")
    assert enveloppe.findtext(f".//{qname('NomFichier')}") == archive.message.name
    assert message.findtext(qname("Objet")) == acte.objet
    assert [e.get(qname("CodeMatiere")) for e in message if "CodeMatiere" in e.tag] == [
        "7",
        "1",
        "3",
    ]
    # Latin-1 text is written as such; the rest as character references, never mangled.
    assert b"taux d&#8217;imposition" in archive.message.content
    assert "œuvres".encode() not in archive.message.content


def test_the_same_transmission_packs_to_the_same_bytes() -> None:
    acte = acte_to_transmit()
    first = build_archive(acte, transmission_id="abc", number=1, day=date(2024, 3, 13))
    second = build_archive(acte, transmission_id="abc", number=1, day=date(2024, 3, 13))
    assert first.content == second.content


def test_a_document_that_breaks_the_schema_is_refused() -> None:
    enveloppe = actes_xml.build_enveloppe(EMETTEUR, ["actes@ville.fr"], ["message.xml"])
    root = etree.fromstring(enveloppe)
    idcl = root.find(f"{qname('Emetteur')}/{qname('IDCL')}")
    assert idcl is not None
    idcl.set(qname("Departement"), "35")

    with pytest.raises(ActesXmlError, match="Departement"):
        actes_xml.validate(root)
    with pytest.raises(ActesXmlError):
        actes_xml.build_enveloppe(EMETTEUR, ["not an address"], ["message.xml"])
    with pytest.raises(ActesXmlError, match="Objet"):
        build_archive(
            acte_to_transmit(objet="x" * 501), transmission_id="t", number=1, day=date.today()
        )


def test_the_prefecture_replies_are_read() -> None:
    ar = actes_xml.read_return_message(
        (DATA / "006-210600235-20180522-684-AI-1-2_5279.xml").read_bytes()
    )
    assert isinstance(ar, actes_xml.AccuseReception)
    assert ar.identifiant_acte == "006-210600235-20180522-684-AI"
    assert ar.date_reception == date(2018, 5, 28)
    assert ar.acte.numero_interne == "684"
    assert ar.acte.nature == 3

    anomalie = actes_xml.read_return_message((DATA / "044-214400152----1-3_1.xml").read_bytes())
    assert isinstance(anomalie, actes_xml.Anomalie)
    assert anomalie.nature == "002"
    assert "classification" in anomalie.detail
    assert anomalie.acte.numero_interne == "123456"

    with pytest.raises(ActesXmlError, match="not one the prefecture sends"):
        actes_xml.read_return_message(
            (DATA / "EACT--SPREF0441-214400152-20181012-9.xml").read_bytes()
        )


def test_hostile_or_invalid_xml_is_refused() -> None:
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<actes:ARActe xmlns:actes="http://www.interieur.gouv.fr/ACTES#v1.1-20040216">&x;'
        b"</actes:ARActe>"
    )
    with pytest.raises(ActesXmlError, match="DTD"):
        actes_xml.parse(entity)
    with pytest.raises(ActesXmlError, match="well-formed"):
        actes_xml.parse(b"<unclosed>")
    sample = (DATA / "006-210600235-20180522-684-AI-1-2_5279.xml").read_bytes()
    with pytest.raises(ActesXmlError, match="schema"):
        actes_xml.parse(sample.replace(b'actes:DateReception="2018-05-28"', b""))
    with pytest.raises(ActesXmlError, match="larger"):
        actes_xml.parse(b" " * (actes_xml.MAX_XML_BYTES + 1))


def test_identifiant_acte_has_the_form_the_schema_requires() -> None:
    pattern = re.compile(r"[0|9][0-9][A|B|0-9]-[0-9]{9}-[0-9]{8}-[a-zA-Z0-9_]{1,15}-[A-Z]{2}")
    for nature in Nature:
        identifiant = identifiant_acte("02A", SIREN, date(2024, 3, 12), "2024_45", nature)
        assert pattern.fullmatch(identifiant)
    assert identifiant_acte("035", SIREN, date(2024, 3, 12), "2024_45", Nature.DELIBERATION) == (
        "035-213502388-20240312-2024_45-DE"
    )
    assert [nature.code for nature in Nature] == ["DE", "AR", "AI", "CC", "BF", "AU"]
    with pytest.raises(ValueError, match="numéro interne"):
        identifiant_acte("035", SIREN, date(2024, 3, 12), "2024-45", Nature.DELIBERATION)


def test_matiere_codes() -> None:
    assert Matiere.parse("7.1.3").levels == (7, 1, 3)
    assert str(Matiere.parse("1.10")) == "1.10"
    for bad in ["7", "0.1", "1.0", "1.1.1.1.1.1", "1.100", "a.b", "1..1"]:
        with pytest.raises(ValueError, match="matière"):
            Matiere.parse(bad)


def test_the_lifecycle_allows_only_its_moves() -> None:
    ensure_transition(ActeState.WAITING_FOR_TRANSMISSION, ActeState.TRANSMITTING)
    ensure_transition(ActeState.TRANSMISSION_FAILED, ActeState.WAITING_FOR_TRANSMISSION)
    ensure_transition(ActeState.TRANSMITTED, ActeState.ACKNOWLEDGED)
    for current, target in [
        (ActeState.WAITING_FOR_TRANSMISSION, ActeState.TRANSMITTED),
        (ActeState.TRANSMITTED, ActeState.TRANSMITTING),
        (ActeState.ACKNOWLEDGED, ActeState.REFUSED),
        (ActeState.REFUSED, ActeState.WAITING_FOR_TRANSMISSION),
    ]:
        with pytest.raises(IllegalTransition):
            ensure_transition(current, target)
