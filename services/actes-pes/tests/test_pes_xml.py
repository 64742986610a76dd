"""PES files read safely, checked against the PES V2 schema, their signatures verified."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from kanol_actes_pes.pes import pes_xml
from kanol_actes_pes.pes.errors import (
    PesEncodingInvalid,
    PesSchemaInvalid,
    PesSignatureInvalid,
    PesSignerUntrusted,
    PesXmlForbidden,
    PesXmlMalformed,
)
from kanol_actes_pes.pes.signature import TrustAnchors, verify_signatures
from kanol_actes_pes.pes.testing import TestPki, reshape_flow
from kanol_actes_pes.simulators.helios import files

DATA = Path(__file__).parent / "data" / "pes"
SAMPLE = DATA / "PESALR2_25060187900027_190328_001.xml"
ACQUIT_KO = DATA / "006111_190130123456-ACK-A3020100_A0000SDP_KO.xml"
SCHEMAS = Path(pes_xml.__file__).resolve().parents[1] / "schemas" / "pes"


def test_the_real_sample_is_valid_and_its_header_read() -> None:
    _, header = pes_xml.read_pes_aller(SAMPLE.read_bytes())

    assert header.nom_fic == "STELA11"
    assert header.id_coll == "75580064600099"
    assert header.siren == "755800646"
    assert (header.cod_col, header.cod_bud, header.id_post) == ("244", "00", "010001")


def test_the_real_samples_signature_verifies_and_its_signer_can_be_pinned() -> None:
    tree, _ = pes_xml.read_pes_aller(SAMPLE.read_bytes())

    [check] = verify_signatures(tree, TrustAnchors())
    assert check.signed_ids == ("N10025",)
    assert check.signing_time == datetime(2019, 3, 28, 9, 9, 14, 187000, tzinfo=UTC)
    assert not check.trusted_chain

    signature = tree.getroot().find(f".//{{{pes_xml.NS_DS}}}X509Certificate")
    assert signature is not None
    certificate = x509.load_der_x509_certificate(base64.b64decode(signature.text or ""))
    [pinned] = verify_signatures(tree, TrustAnchors((certificate,)))
    assert pinned.trusted_chain


def test_the_real_sample_with_one_byte_changed_in_its_bordereau_fails() -> None:
    forged = SAMPLE.read_bytes().replace(b'MtBordHT V="4874.40"', b'MtBordHT V="4874.41"')
    tree, _ = pes_xml.read_pes_aller(forged)

    with pytest.raises(PesSignatureInvalid, match="N10025 changed after signing"):
        verify_signatures(tree, TrustAnchors())


def test_a_flow_signed_by_the_test_authority_is_trusted(pki: TestPki) -> None:
    tree, _ = pes_xml.read_pes_aller(reshape_flow(SAMPLE.read_bytes(), pki=pki))

    [check] = verify_signatures(tree, pki.anchors())

    assert check.trusted_chain
    assert "Jeanne Le Gall" in check.signer_subject


def test_a_forged_signature_value_fails(pki: TestPki) -> None:
    signed = reshape_flow(SAMPLE.read_bytes(), pki=pki)
    root = etree.fromstring(signed)
    value = root.find(f".//{{{pes_xml.NS_DS}}}SignatureValue")
    assert value is not None and value.text
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    tree = etree.fromstring(etree.tostring(root, encoding="ISO-8859-1")).getroottree()

    with pytest.raises(PesSignatureInvalid, match="signature value does not match"):
        verify_signatures(tree, pki.anchors())


def test_a_second_element_with_the_signed_id_is_refused(pki: TestPki) -> None:
    # Signature wrapping: a copy of the signed block under the same Id, elsewhere.
    root = etree.fromstring(reshape_flow(SAMPLE.read_bytes(), pki=pki))
    bordereau = root.find("PES_DepenseAller/Bordereau")
    assert bordereau is not None
    decoy = etree.SubElement(root.find("PES_DepenseAller"), "Bordereau", {"Id": "N10025"})
    decoy.text = "x"

    with pytest.raises(PesSignatureInvalid, match="matches 2 elements"):
        verify_signatures(root.getroottree(), pki.anchors())


def test_a_signer_of_another_authority_is_untrusted(pki: TestPki) -> None:
    stranger = TestPki.create(signer_name="Someone else")
    tree, _ = pes_xml.read_pes_aller(reshape_flow(SAMPLE.read_bytes(), pki=stranger))

    with pytest.raises(PesSignerUntrusted, match="does not chain"):
        verify_signatures(tree, pki.anchors())


def test_a_certificate_expired_at_signing_time_is_untrusted() -> None:
    now = datetime.now(UTC)
    expired = TestPki.create(not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    tree, _ = pes_xml.read_pes_aller(reshape_flow(SAMPLE.read_bytes(), pki=expired))

    with pytest.raises(PesSignerUntrusted, match="not at the signing time"):
        verify_signatures(tree, expired.anchors())


def test_a_signer_revoked_before_signing_is_refused(pki: TestPki) -> None:
    signed_at = datetime.now(UTC) - timedelta(hours=2)
    flow = reshape_flow(SAMPLE.read_bytes(), pki=pki, signing_time=signed_at)
    tree, _ = pes_xml.read_pes_aller(flow)
    crl = pki.revocation_list(revoked_at=signed_at - timedelta(days=3))

    with pytest.raises(PesSignerUntrusted, match=r"was revoked on .* before the signing time"):
        verify_signatures(tree, pki.anchors((crl,)))


def test_a_signer_revoked_after_signing_still_vouches_for_what_it_signed(pki: TestPki) -> None:
    signed_at = datetime.now(UTC) - timedelta(days=2)
    flow = reshape_flow(SAMPLE.read_bytes(), pki=pki, signing_time=signed_at)
    tree, _ = pes_xml.read_pes_aller(flow)
    crl = pki.revocation_list(revoked_at=signed_at + timedelta(days=1))

    [check] = verify_signatures(tree, pki.anchors((crl,)))

    assert check.trusted_chain and check.revocation_checked


def test_only_a_list_signed_by_the_issuer_counts(pki: TestPki) -> None:
    tree, _ = pes_xml.read_pes_aller(reshape_flow(SAMPLE.read_bytes(), pki=pki))
    forger = TestPki.create()
    forged = pki.revocation_list(datetime.now(UTC) - timedelta(days=1), signed_by=forger.ca_key)

    [unlisted] = verify_signatures(tree, pki.anchors())
    [forged_only] = verify_signatures(tree, pki.anchors((forged,)))
    [listed] = verify_signatures(tree, pki.anchors((pki.revocation_list(),)))

    assert not unlisted.revocation_checked
    assert forged_only.trusted_chain and not forged_only.revocation_checked
    assert listed.revocation_checked


def test_revocation_lists_are_read_from_pem_or_der_files(pki: TestPki, tmp_path: Path) -> None:
    crl = pki.revocation_list()
    pem, der = tmp_path / "ca.crl.pem", tmp_path / "ca.crl"
    pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    der.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    anchors_file = tmp_path / "anchors.pem"
    anchors_file.write_bytes(pki.ca_pem())

    anchors = TrustAnchors.from_file(anchors_file, [pem, der])

    assert anchors.certificates == (pki.ca_certificate,)
    assert [item.fingerprint(hashes.SHA256()) for item in anchors.revocation_lists] == [
        crl.fingerprint(hashes.SHA256())
    ] * 2


def test_a_doctype_is_refused_before_parsing() -> None:
    hostile = (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    )
    with pytest.raises(PesXmlForbidden):
        pes_xml.parse_safely(hostile)


def test_a_latin1_file_declared_utf8_is_refused() -> None:
    mislabelled = SAMPLE.read_bytes().replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"', 1)
    with pytest.raises(PesEncodingInvalid, match="not UTF-8"):
        pes_xml.read_pes_aller(mislabelled)


def test_a_deeply_nested_document_is_refused() -> None:
    deep = b"<a>" * 20_000 + b"</a>" * 20_000
    with pytest.raises(PesXmlMalformed):
        pes_xml.parse_safely(deep)


def test_a_flow_against_the_schema_is_refused_with_its_errors() -> None:
    invalid = SAMPLE.read_bytes().replace(b'<CodCol V="244"/>', b'<CodCol V="24400"/>')
    with pytest.raises(PesSchemaInvalid) as caught:
        pes_xml.read_pes_aller(invalid)
    assert "CodCol" in caught.value.detail
    assert caught.value.extensions["errors"]


def test_the_real_ko_acknowledgement_is_read_with_numbered_errors() -> None:
    acquit = pes_xml.read_acquit(ACQUIT_KO.read_bytes())

    assert not acquit.accepted
    assert [(e.number, e.code, e.piece) for e in acquit.errors] == [
        (1, "ERREUR_AUTRE", "5432"),
        (2, "ERREUR_AUTRE", "4321"),
    ]
    assert acquit.errors[0].label.startswith("2559 - Le code service")
    assert acquit.nom_fic == "PesRecette-02-2018-258-258-20190129666666"


def test_the_simulators_acknowledgements_and_returns_follow_the_schemas() -> None:
    _, header = pes_xml.read_pes_aller(SAMPLE.read_bytes())
    elements = [
        files.Element("5", True, num_bord="11", exercice_bord="2019"),
        files.Element(
            "4",
            False,
            id_unique="X1",
            erreurs=(files.Erreur("ERREUR_DOUBLON_PJ", "PJ déjà reçue"),),
        ),
    ]
    acquit = files.acquit(header, elements, datetime.now(UTC).date())
    retour = files.retour(header, "PES2R_DEP_P_244_00_010001", datetime.now(UTC).date())

    read = pes_xml.read_acquit(acquit)
    assert not read.accepted
    assert [(e.number, e.code) for e in read.errors] == [(1, "ERREUR_DOUBLON_PJ")]
    assert pes_xml.read_retour(retour).id_coll == header.id_coll


def test_the_shipped_schemas_are_the_ones_origin_names() -> None:
    origin = (SCHEMAS / "ORIGIN.md").read_text(encoding="utf-8")
    for path in sorted(SCHEMAS.rglob("*.xsd")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"`{digest}`" in origin, path.relative_to(SCHEMAS)
