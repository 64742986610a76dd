"""The SEDA schemas shipped with archive, and the messages archive builds against them."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from kanol_archive.seda.deposits import DepositedObject, Parties, acte_transfer, pes_transfer
from kanol_archive.seda.manifest import KANOL_NS, build_transfer, manifest_bytes
from kanol_archive.seda.reply import (
    CHECK_DIGEST,
    CHECK_SEDA,
    ReplyCode,
    ReplyEvent,
    TransferReply,
    reply_bytes,
)
from kanol_archive.seda.rules import DefaultRules, acte_kind
from kanol_archive.seda.schema import (
    SCHEMAS_DIR,
    SedaVersion,
    SedaXmlError,
    parse,
    validation_errors,
)
from kanol_common.events import DocumentRef
from kanol_common.events.actes import ActeAcknowledged, AnnexeInfo
from kanol_common.events.pes import PesFlowAcknowledged

from .seda_samples import description, manifest

SIREN = "213502388"
ORIGIN = SCHEMAS_DIR / "ORIGIN.md"


def _checksums() -> list[tuple[str, str]]:
    rows = [
        line.split("`")
        for line in ORIGIN.read_text().splitlines()
        if line.startswith("| `v") and "/`" not in line
    ]
    return [(row[1], row[3]) for row in rows]


def test_the_shipped_schemas_are_the_published_ones() -> None:
    checksums = _checksums()

    assert len(checksums) == 18
    for name, sha256 in checksums:
        assert hashlib.sha256((SCHEMAS_DIR / name).read_bytes()).hexdigest() == sha256, name


def test_the_schemas_resolve_without_the_shared_folder() -> None:
    # Every file the schemas need is in the package: nothing points at /work/shared.
    for path in Path(SCHEMAS_DIR).rglob("*.xsd"):
        assert "/work/shared" not in path.read_text(encoding="utf-8")
    assert SCHEMAS_DIR.is_relative_to(Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("version", list(SedaVersion))
def test_a_built_transfer_is_valid_against_its_version(version: SedaVersion) -> None:
    root = build_transfer(description({"content/a.pdf": b"%PDF a"}, siren=SIREN), version)

    assert validation_errors(root, version) == ()
    assert etree.QName(root).namespace == version.namespace


@pytest.mark.parametrize("version", list(SedaVersion))
def test_the_schema_catches_a_broken_transfer(version: SedaVersion) -> None:
    root = build_transfer(description({"content/a.pdf": b"%PDF a"}, siren=SIREN), version)
    ns = {"s": version.namespace}
    identifier = root.find("s:MessageIdentifier", ns)
    assert identifier is not None
    root.remove(identifier)
    level = root.find(".//s:DescriptionLevel", ns)
    assert level is not None
    level.text = "Chapitre"

    errors = validation_errors(root, version)

    assert any("DescriptionLevel" in error or "Chapitre" in error for error in errors)
    assert any("MessageIdentifier" in error for error in errors)


@pytest.mark.parametrize("version", list(SedaVersion))
def test_an_atr_ok_and_an_atr_ko_are_valid(version: SedaVersion) -> None:
    at = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
    for code, events in (
        (ReplyCode.OK, (ReplyEvent(CHECK_SEDA, ReplyCode.OK, at),)),
        (
            ReplyCode.KO,
            (
                ReplyEvent(CHECK_SEDA, ReplyCode.OK, at),
                ReplyEvent(CHECK_DIGEST, ReplyCode.KO, at, "a.pdf: SHA-512\nmismatch", "BDO1"),
            ),
        ),
    ):
        reply = TransferReply(
            message_identifier="ATR-1",
            date=at,
            request_identifier="MSG-1",
            code=code,
            events=events,
            archival_agency="KANOL-SAE",
            transferring_agency=SIREN,
            grant_date=at if code is ReplyCode.OK else None,
        )
        root, parsed_version = parse(reply_bytes(reply, version))

        assert parsed_version is version
        ns = {"s": version.namespace}
        assert root.findtext("s:ReplyCode", namespaces=ns) == code.value
        assert root.findtext("s:MessageRequestIdentifier", namespaces=ns) == "MSG-1"
        outcomes = [e.findtext("s:Outcome", namespaces=ns) for e in root.iterfind(".//s:Event", ns)]
        assert outcomes == [event.outcome.value for event in events]


def test_an_acte_becomes_a_valid_transfer_with_its_metadata() -> None:
    acte = ActeAcknowledged(
        acte_id="4b7c1f0e-0000-4000-8000-000000000001",
        siren=SIREN,
        identifiant_acte=f"035-{SIREN}-20240312-2024_45-DE",
        numero_interne="2024_45",
        nature=1,
        matiere="7.1",
        objet="Budget primitif 2024",
        date_decision=date(2024, 3, 12),
        date_reception=date(2024, 3, 13),
        acknowledged_at=datetime(2024, 3, 13, 9, 0, tzinfo=UTC),
        documents=(_ref("acte"),),
        departement="035",
        type_piece="99_DE",
        annexes=(AnnexeInfo(position=1, type_piece="41_NC", role="annexe_1", filename="a.pdf"),),
    )
    objects = [
        DepositedObject("acte_tamponne", "budget.pdf", "application/pdf", 10, "a" * 128),
        DepositedObject("annexe_1", "annexe 1.pdf", "application/pdf", 20, "b" * 128),
        DepositedObject("ar_acte", "ar.xml", "application/xml", 30, "c" * 128),
    ]
    parties = Parties("KANOL-1", datetime(2024, 3, 13, tzinfo=UTC), "KANOL-SAE", SIREN)

    transfer = acte_transfer(acte, objects, DefaultRules().rules_for(acte_kind(1)), parties)
    root, version = parse(manifest_bytes(transfer, SedaVersion.V2_1))

    ns = {"s": version.namespace, "k": KANOL_NS}
    assert root.findtext(".//s:OriginatingAgencyArchiveUnitIdentifier", namespaces=ns) == (
        acte.acte_id
    )
    assert root.findtext(".//s:OriginatingAgencyIdentifier", namespaces=ns) == SIREN
    assert root.findtext(".//s:AppraisalRule/s:FinalAction", namespaces=ns) == "Keep"
    assert root.findtext(".//k:Matiere", namespaces=ns) == "7.1"
    assert root.findtext(".//s:StartDate", namespaces=ns) == "2024-03-12"
    digests = root.findall(".//s:BinaryDataObject/s:MessageDigest", ns)
    assert [(d.get("algorithm"), d.text) for d in digests] == [
        ("SHA-512", "a" * 128),
        ("SHA-512", "b" * 128),
        ("SHA-512", "c" * 128),
    ]
    documents = root.findall(".//s:ArchiveUnit/s:ArchiveUnit", ns)
    assert [unit.findtext("s:Content/s:DocumentType", namespaces=ns) for unit in documents] == [
        "Acte tamponné par l'accusé de réception",
        "Annexe 1",
        "Accusé de réception de la préfecture (ARActe, 1-2)",
    ]
    assert [unit.findtext("s:Content/k:TypePiece", namespaces=ns) for unit in documents] == [
        "99_DE",
        "41_NC",
        None,
    ]
    assert root.findtext(".//k:Departement", namespaces=ns) == "035"
    assert root.findtext("s:ArchivalAgreement", namespaces=ns) == "KANOL-ACTES"


def test_a_pes_flow_becomes_a_valid_transfer_destroyed_after_its_term() -> None:
    flow = PesFlowAcknowledged(
        flow_id="flow-1",
        siren=SIREN,
        id_coll=f"{SIREN}00013",
        nom_fic="PESALR2_213502388_20240312_1.xml",
        cod_col="001",
        cod_bud="01",
        id_post="035001",
        date_ack=date(2024, 3, 13),
        acknowledged_at=datetime(2024, 3, 13, 9, 0, tzinfo=UTC),
        documents=(_ref("pes_aller"), _ref("pes_acquit")),
    )
    objects = [
        DepositedObject("pes_aller", "flux.xml", "application/xml", 10, "a" * 128),
        DepositedObject("pes_acquit", "acquit.xml", "application/xml", 20, "b" * 128),
    ]
    parties = Parties("KANOL-2", datetime(2024, 3, 13, tzinfo=UTC), "KANOL-SAE", SIREN)

    transfer = pes_transfer(flow, objects, DefaultRules().rules_for("pes.flow"), parties)
    root, version = parse(manifest_bytes(transfer, SedaVersion.V2_1))

    ns = {"s": version.namespace}
    assert root.findtext(".//s:AppraisalRule/s:FinalAction", namespaces=ns) == "Destroy"
    assert root.findtext(".//s:OriginatingAgencyArchiveUnitIdentifier", namespaces=ns) == "flow-1"


@pytest.mark.parametrize(
    "hostile",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.1">&e;'
        b"</ArchiveTransfer>",
        b"<ArchiveTransfer xmlns='urn:not-seda'/>",
        b"<ArchiveTransfer",
    ],
)
def test_hostile_or_foreign_xml_is_refused_before_validation(hostile: bytes) -> None:
    with pytest.raises(SedaXmlError):
        parse(hostile)


def test_the_manifest_of_a_sample_transfer_parses_back() -> None:
    data = manifest(description({"content/a.pdf": b"a"}, siren=SIREN), SedaVersion.V2_2)

    root, version = parse(data)

    assert version is SedaVersion.V2_2
    assert validation_errors(root, version) == ()


def _ref(role: str) -> DocumentRef:
    return DocumentRef(
        role=role,
        uri=f"http://127.0.0.1/{role}",
        sha256="0" * 64,
        size=1,
        media_type="application/pdf",
        filename=f"{role}.pdf",
    )
