"""Hostile input is refused with a problem naming the fault, and nothing is kept or sent:
XML with entities or a DTD, entity expansion, huge documents, a wrong encoding, an archive
that does not match its envelope, a corrupted PDF, another organisation's SIREN."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kanol_actes_pes.acte import Matiere, Nature
from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.port import ArchiveFile, ReturnMessage
from kanol_actes_pes.prefecture.transmission import pack
from kanol_actes_pes.testing import make_pdf

from .conftest import OTHER_SIREN, SIREN, Actes, Simulator
from .test_submit import assert_problem

NS = actes_xml.ACTES_NS
XXE = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b'<actes:EnveloppeCLMISILL xmlns:actes="' + NS.encode() + b'">&x;</actes:EnveloppeCLMISILL>'
)
LAUGHS = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8)
    )
    + b']>\n<actes:EnveloppeCLMISILL xmlns:actes="'
    + NS.encode()
    + b'">&i;</actes:EnveloppeCLMISILL>'
)


def _enveloppe(message_name: str) -> bytes:
    emetteur = actes_xml.Emetteur(SIREN, "035", 1, "31")
    return actes_xml.build_enveloppe(emetteur, ["a@kanol.fr"], [message_name])


def _valid_files() -> list[ArchiveFile]:
    identifiant = f"035-{SIREN}-20240312-X1-DE"
    pdf_name = f"99_DE-{identifiant}-1-1_1.pdf"
    message = actes_xml.build_acte(
        actes_xml.ActeMessage(
            date_decision=datetime(2024, 3, 12, tzinfo=UTC).date(),
            numero_interne="X1",
            nature=Nature.DELIBERATION,
            matiere=Matiere.parse("7.1.3"),
            objet="Délibération",
            classification_date=datetime(2019, 3, 1, tzinfo=UTC).date(),
            document=pdf_name,
        )
    )
    message_name = f"{identifiant}-1-1_0.xml"
    return [
        ArchiveFile(f"EACT--{SIREN}--20240312-1.xml", _enveloppe(message_name), "application/xml"),
        ArchiveFile(message_name, message, "application/xml"),
        ArchiveFile(pdf_name, make_pdf(), "application/pdf"),
    ]


def _with_enveloppe(content: bytes) -> bytes:
    files = _valid_files()
    files[0] = ArchiveFile(files[0].name, content, files[0].media_type)
    return pack(files)


def _huge() -> bytes:
    filler = b"<actes:Email>a@kanol.fr</actes:Email>" * (actes_xml.MAX_XML_BYTES // 30)
    return _enveloppe("m.xml").replace(b"<actes:Email>a@kanol.fr</actes:Email>", filler)


CASES: list[tuple[str, bytes, str]] = [
    ("external entity", _with_enveloppe(XXE), "DTD"),
    ("entity expansion", _with_enveloppe(LAUGHS), "entity"),
    ("huge document", _with_enveloppe(_huge()), "larger than"),
    (
        "UTF-8 declared, Latin-1 bytes",
        _with_enveloppe(
            _enveloppe("m.xml")
            .replace(b"ISO-8859-1", b"UTF-8")
            .replace(b"a@kanol.fr", "é@kanol.fr".encode("latin-1"))
        ),
        "not well-formed",
    ),
    (
        "UTF-8 instead of ISO-8859-1",
        _with_enveloppe(_enveloppe("m.xml").replace(b"encoding='ISO-8859-1'", b"encoding='UTF-8'")),
        "ISO-8859-1",
    ),
    ("archive without the message its envelope lists", pack(_valid_files()[:1]), "does not hold"),
    ("not a tar.gz", b"%PDF-1.7 not an archive", "not a readable tar.gz"),
]


@pytest.mark.parametrize(("case", "archive", "fault"), CASES, ids=[c[0] for c in CASES])
async def test_the_gateway_refuses_hostile_archives(
    simulator: Simulator, case: str, archive: bytes, fault: str
) -> None:
    response = await simulator.http.post(
        "/v1/transmissions",
        content=archive,
        headers={"Idempotency-Key": f"k-{case}", "Content-Type": "application/gzip"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fault in response.json()["detail"], response.json()
    assert await simulator.transmissions() == []


@pytest.mark.parametrize("document", [XXE, LAUGHS], ids=["external entity", "entity expansion"])
async def test_the_simulator_refuses_a_hostile_classification(
    simulator: Simulator, document: bytes
) -> None:
    response = await simulator.http.put("/v1/operator/classification", content=document)
    assert_problem(response, 400, "bad-request")


async def test_a_hostile_return_message_is_skipped_and_nothing_kept(actes: Actes) -> None:
    before = await actes.counts()
    hostile = ReturnMessage(
        cursor="1",
        code="1-2",
        filename="x-1-2_1.xml",
        content=XXE.replace(b"EnveloppeCLMISILL", b"ARActe"),
        transmission_id=None,
        identifiant_acte=None,
        received_at=datetime.now(UTC),
    )
    await actes.receiver.handle(hostile)
    assert await actes.counts() == before


async def test_corrupted_annexe_and_other_organisation_are_refused(actes: Actes) -> None:
    before = await actes.counts()
    pdf = make_pdf()
    corrupted = await actes.submit(
        actes.metadata(annexes=[{"type_piece": "21_RP"}]), annexes=[pdf[: len(pdf) // 2]]
    )
    body = assert_problem(corrupted, 422, "acte-document-corrupted")
    assert body["document"] == "The annexe 1"
    not_pdf = await actes.submit(
        actes.metadata(annexes=[{"type_piece": "21_RP"}]), annexes=[b"<html></html>"]
    )
    assert_problem(not_pdf, 415, "acte-document-not-pdf")
    other = await actes.submit(actes.metadata(siren=OTHER_SIREN))
    assert_problem(other, 403, "acte-other-organisation")
    other_siret = await actes.submit(actes.metadata(siret="20002341400002"))
    assert "20002341400002" in assert_problem(other_siret, 403, "acte-other-organisation")["detail"]
    bad_siret = await actes.submit(actes.metadata(siret="21350238800002"))
    assert_problem(bad_siret, 422, "acte-siret-invalid")
    own_siret = await actes.submit(actes.metadata(siret="21350238800001"))
    assert own_siret.status_code == 201, own_siret.text
    before = await actes.counts()
    metadata: dict[str, Any] = actes.metadata()
    metadata["annexes"] = [{"type_piece": "../../etc"}]
    traversal = await actes.submit(metadata, annexes=[pdf])
    assert_problem(traversal, 422, "acte-type-piece-invalid")
    files = [("metadata", (None, json.dumps(["not", "an", "object"]).encode(), "application/json"))]
    files.append(("acte", ("a.pdf", pdf, "application/pdf")))
    malformed = await actes.http.post("/v1/actes", files=files, headers=actes.headers())
    assert_problem(malformed, 400, "acte-metadata-invalid")
    assert await actes.counts() == before
