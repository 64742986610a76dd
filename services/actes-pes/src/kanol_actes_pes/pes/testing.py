"""Helpers for tests, benches and demos of PES: a throwaway PKI and a XAdES signer.

The signer writes what real PES signing tools write (see the sample in
``tests/data/pes``): an enveloped ``ds:Signature`` as the last child of the signed block,
RSA-SHA256 over exclusive c14n, one reference to the block's ``Id`` and one to the XAdES
1.1.1 ``SignedProperties`` (signing time, certificate digest, the Hélios signature policy).
Not for production: keys live in memory and nothing is protected.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from kanol_actes_pes.pes.signature import DS, ENVELOPED, EXC_C14N, RSA_SHA256, SHA256, TrustAnchors

XAD = "http://uri.etsi.org/01903/v1.1.1#"
HELIOS_POLICY_OID = "urn:oid:1.2.250.1.131.1.5.18.21.1.7"
HELIOS_POLICY_HASH = "roF9+cfRHNPtVJolhdqfIqGMVuUXX8aR4rpiquf0u5E="
KEY_SIZE = 2048


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kanol tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    """A signer's usages (digitalSignature, nonRepudiation), or an encryption key's."""
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=signing,
        key_encipherment=not signing,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


SIGNING_KEY_USAGE = _key_usage(signing=True)
ENCRYPTION_KEY_USAGE = _key_usage(signing=False)


@dataclass(frozen=True)
class TestPki:
    """A certification authority and one signer's certificate issued by it."""

    __test__ = False  # not a pytest class

    ca_key: rsa.RSAPrivateKey
    ca_certificate: x509.Certificate
    signer_key: rsa.RSAPrivateKey
    signer_certificate: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        signer_name: str = "Jeanne Le Gall, maire",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> TestPki:
        now = datetime.now(UTC)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        ca_name = _name("Kanol test CA")
        ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        authority = cls(ca_key, ca_certificate, ca_key, ca_certificate)
        return authority.with_signer(signer_name, not_before=not_before, not_after=not_after)

    def with_signer(
        self,
        signer_name: str = "Jeanne Le Gall, maire",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_usage: x509.KeyUsage = SIGNING_KEY_USAGE,
    ) -> TestPki:
        """The same authority with a new signer's certificate, for signing unless told."""
        now = datetime.now(UTC)
        signer_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        signer_certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(signer_name))
            .issuer_name(self.ca_certificate.subject)
            .public_key(signer_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=365))
            .not_valid_after(not_after or now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        return TestPki(self.ca_key, self.ca_certificate, signer_key, signer_certificate)

    def anchors(
        self, revocation_lists: tuple[x509.CertificateRevocationList, ...] = ()
    ) -> TrustAnchors:
        return TrustAnchors((self.ca_certificate,), revocation_lists)

    def revocation_list(
        self, revoked_at: datetime | None = None, *, signed_by: rsa.RSAPrivateKey | None = None
    ) -> x509.CertificateRevocationList:
        """The authority's CRL, revoking the signer at ``revoked_at`` (None: nobody)."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca_certificate.subject)
            .last_update(now - timedelta(hours=1))
            .next_update(now + timedelta(days=1))
        )
        if revoked_at is not None:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(self.signer_certificate.serial_number)
                .revocation_date(revoked_at)
                .build()
            )
        return builder.sign(signed_by or self.ca_key, hashes.SHA256())

    def ca_pem(self) -> bytes:
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def _ds(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{DS}}}{tag}", attributes)


def _xad(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{XAD}}}{tag}")
    element.text = text
    return element


def sign_element(
    target: etree._Element,
    pki: TestPki,
    *,
    signature_id: str,
    signing_time: datetime | None = None,
) -> etree._Element:
    """Sign ``target`` (which must carry an ``Id``) with an enveloped XAdES signature."""
    target_id = target.get("Id")
    assert target_id, "the signed block needs an Id"
    block_digest = _b64(hashlib.sha256(_c14n(target)).digest())

    signature = etree.SubElement(
        target, f"{{{DS}}}Signature", {"Id": signature_id}, nsmap={"ds": DS}
    )
    signed_info = _ds(signature, "SignedInfo")
    _ds(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    _ds(signed_info, "SignatureMethod", Algorithm=RSA_SHA256)
    reference = _ds(signed_info, "Reference", URI=f"#{target_id}")
    transforms = _ds(reference, "Transforms")
    _ds(transforms, "Transform", Algorithm=ENVELOPED)
    _ds(transforms, "Transform", Algorithm=EXC_C14N)
    _ds(reference, "DigestMethod", Algorithm=SHA256)
    _ds(reference, "DigestValue").text = block_digest
    properties_id = f"{signature_id}_SP"
    properties_reference = _ds(signed_info, "Reference", URI=f"#{properties_id}")
    _ds(_ds(properties_reference, "Transforms"), "Transform", Algorithm=EXC_C14N)
    _ds(properties_reference, "DigestMethod", Algorithm=SHA256)
    properties_digest = _ds(properties_reference, "DigestValue")
    value = _ds(signature, "SignatureValue", Id=f"{signature_id}_SV")

    certificate = pki.signer_certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    key_info = _ds(signature, "KeyInfo", Id=f"{signature_id}_KI")
    _ds(_ds(key_info, "X509Data"), "X509Certificate").text = _b64(der)

    obj = _ds(signature, "Object", Id=f"{signature_id}_QI")
    qualifying = etree.SubElement(
        obj, f"{{{XAD}}}QualifyingProperties", {"Target": signature_id}, nsmap={"xad": XAD}
    )
    signed_properties = etree.SubElement(
        qualifying, f"{{{XAD}}}SignedProperties", {"Id": properties_id}
    )
    signature_properties = _xad(signed_properties, "SignedSignatureProperties")
    moment = signing_time or datetime.now(UTC)
    _xad(signature_properties, "SigningTime", moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
    cert = _xad(_xad(signature_properties, "SigningCertificate"), "Cert")
    cert_digest = _xad(cert, "CertDigest")
    etree.SubElement(cert_digest, f"{{{XAD}}}DigestMethod", {"Algorithm": SHA256})
    _xad(cert_digest, "DigestValue", _b64(hashlib.sha256(der).digest()))
    issuer_serial = _xad(cert, "IssuerSerial")
    _ds(issuer_serial, "X509IssuerName").text = certificate.issuer.rfc4514_string()
    _ds(issuer_serial, "X509SerialNumber").text = str(certificate.serial_number)
    policy = _xad(_xad(signature_properties, "SignaturePolicyIdentifier"), "SignaturePolicyId")
    policy_id = _xad(policy, "SigPolicyId")
    _xad(policy_id, "Identifier", HELIOS_POLICY_OID)
    _xad(policy_id, "Description", "Politique de signature Helios de la DGFiP")
    policy_hash = _xad(policy, "SigPolicyHash")
    etree.SubElement(policy_hash, f"{{{XAD}}}DigestMethod", {"Algorithm": SHA256})
    _xad(policy_hash, "DigestValue", HELIOS_POLICY_HASH)

    properties_digest.text = _b64(hashlib.sha256(_c14n(signed_properties)).digest())
    raw = pki.signer_key.sign(_c14n(signed_info), padding.PKCS1v15(), hashes.SHA256())
    value.text = _b64(raw)
    return signature


def reshape_flow(
    content: bytes,
    *,
    nom_fic: str | None = None,
    id_coll: str | None = None,
    pki: TestPki | None = None,
    number: int | None = None,
    unsigned: bool = False,
    signing_time: datetime | None = None,
) -> bytes:
    """A copy of a PES_Aller with another NomFic or IdColl, re-signed by ``pki``.

    ``number`` renumbers every bordereau (``IdBord``) and attached piece (``IdUnique``), so
    that Hélios does not see the copy as a duplicate of the original. Every existing
    signature is removed when ``pki`` or ``unsigned`` is given; with ``pki`` each
    ``Bordereau`` carrying an ``Id`` is signed again.
    """
    root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    if nom_fic is not None:
        _set(root, "Enveloppe/Parametres/NomFic", nom_fic)
    if id_coll is not None:
        _set(root, "EnTetePES/IdColl", id_coll)
    if number is not None:
        for bordereau in root.iter("BlocBordereau"):
            _set(bordereau, "IdBord", str(number % 9_000_000 + 1))
        for position, pj in enumerate(root.iterfind("PES_PJ/PJ"), start=1):
            _set(pj, "IdUnique", f"KANOL{number:012d}P{position}")
    if pki is not None or unsigned:
        for signature in list(root.iter(f"{{{DS}}}Signature")):
            parent = signature.getparent()
            assert parent is not None
            parent.remove(signature)
    if pki is not None:
        blocks = [block for block in root.iter("Bordereau") if block.get("Id")]
        for number, block in enumerate(blocks, start=1):
            sign_element(block, pki, signature_id=f"SIG{number}", signing_time=signing_time)
    return _xml_bytes(root)


def _set(root: etree._Element, path: str, value: str) -> None:
    element = root.find(path)
    assert element is not None, path
    element.set("V", value)


def _xml_bytes(root: etree._Element) -> bytes:
    data = etree.tostring(root.getroottree(), xml_declaration=True, encoding="ISO-8859-1")
    assert isinstance(data, bytes)
    return data
