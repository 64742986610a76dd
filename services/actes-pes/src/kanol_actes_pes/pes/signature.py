"""Checking the XML signatures of a PES flow: XML-DSig with XAdES signed properties.

What PES flows carry (the DGFiP's Hélios signature policy): enveloped signatures, RSA-SHA256
over exclusively canonicalised ``SignedInfo``, each ``Reference`` pointing by ``Id`` at a
signed block (a ``Bordereau``, the ``PES_Aller`` itself, a ``PJ``) and at the XAdES
``SignedProperties`` that hold the signing time and the digest of the signer's certificate.

Checked here, with lxml and cryptography only (no xmlsec):

- every reference points at exactly one element of the document (a duplicated ``Id`` is
  refused: it is how signature-wrapping attacks hide a second, unsigned block);
- only the algorithms above (and inclusive c14n, SHA-256 digests) are accepted;
- each digest, then the signature value with the certificate in ``KeyInfo``;
- the XAdES ``SignedProperties`` are referenced (hence signed), their ``CertDigest`` is the
  signer's certificate's, and their ``SigningTime`` lies within its validity;
- when trust anchors are configured, the certificate chains to one of them (through the
  certificates of ``KeyInfo``), each link valid at signing time. Without anchors, the
  chain is not checked and the result says so (``trusted_chain`` false);
- when revocation lists are configured (CRLs the operator refreshes from the authorities'
  distribution points), no link of the chain was revoked at or before the signing time; a
  certificate revoked later still vouches for what it signed before. The result says
  whether a list signed by its issuer covered every link (``revocation_checked``).

Not checked: OCSP (no responder can be reached from here), the certificates' key usage and
the signature policy.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from kanol_actes_pes.pes.errors import PesSignatureInvalid, PesSignerUntrusted

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NAMESPACES = ("http://uri.etsi.org/01903/v1.1.1#", "http://uri.etsi.org/01903/v1.3.2#")

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
CANONICALISATIONS = {EXC_C14N: True, C14N: False}
MAX_CHAIN = 5
CLOCK_SKEW = timedelta(minutes=5)

_BY_ID = etree.XPath("//*[@Id=$id]")


@dataclass(frozen=True)
class TrustAnchors:
    """The certification authorities whose signers are trusted (empty: chain not checked),
    and the revocation lists known of them and of their intermediates."""

    certificates: tuple[x509.Certificate, ...] = ()
    revocation_lists: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def from_pem(cls, pem: bytes) -> TrustAnchors:
        return cls(tuple(x509.load_pem_x509_certificates(pem)))

    @classmethod
    def from_file(cls, path: Path | None, crl_paths: Sequence[Path] = ()) -> TrustAnchors:
        certificates = () if path is None else cls.from_pem(path.read_bytes()).certificates
        return cls(certificates, tuple(load_revocation_list(crl) for crl in crl_paths))

    @property
    def configured(self) -> bool:
        return bool(self.certificates)


@dataclass(frozen=True)
class SignatureCheck:
    """One verified signature: what it signs, who signed, when."""

    signature_id: str | None
    signed_ids: tuple[str, ...]
    signer_subject: str
    signer_serial: str
    signer_sha256: str
    signing_time: datetime
    trusted_chain: bool
    revocation_checked: bool = False


def load_revocation_list(path: Path) -> x509.CertificateRevocationList:
    """A CRL file, PEM or DER as the authorities publish them."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def verify_signatures(
    tree: etree._ElementTree, anchors: TrustAnchors, now: datetime | None = None
) -> list[SignatureCheck]:
    """Verify every ``ds:Signature`` of the document; raise at the first that fails."""
    now = now or datetime.now(UTC)
    return [
        _verify(tree, signature, anchors, now)
        for signature in tree.getroot().iter(f"{{{DS}}}Signature")
    ]


def _invalid(signature: etree._Element, reason: str) -> PesSignatureInvalid:
    name = signature.get("Id") or "without Id"
    return PesSignatureInvalid(f"Signature {name}: {reason}", signature_id=signature.get("Id"))


def _child(parent: etree._Element, tag: str) -> etree._Element | None:
    return parent.find(f"{{{DS}}}{tag}")


def _canonical(element: etree._Element, exclusive: bool) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=False)


def _verify(
    tree: etree._ElementTree, signature: etree._Element, anchors: TrustAnchors, now: datetime
) -> SignatureCheck:
    signed_info = _child(signature, "SignedInfo")
    value = _child(signature, "SignatureValue")
    if signed_info is None or value is None:
        raise _invalid(signature, "SignedInfo or SignatureValue is missing")
    exclusive = _canonicalisation(signature, signed_info)
    method = signed_info.find(f"{{{DS}}}SignatureMethod")
    if method is None or method.get("Algorithm") != RSA_SHA256:
        algorithm = None if method is None else method.get("Algorithm")
        raise _invalid(signature, f"signature algorithm {algorithm} is not RSA-SHA256")

    signed_ids = [
        _check_reference(tree, signature, reference)
        for reference in signed_info.iterfind(f"{{{DS}}}Reference")
    ]
    certificates = _certificates(signature)
    signer = certificates[0]
    _check_value(signature, signed_info, value, signer, exclusive)

    properties = _signed_properties(tree, signature, signed_ids)
    signing_time = _signing_time(signature, properties, now)
    _check_cert_digest(signature, properties, signer)
    _check_valid_at(signature, signer, signing_time)
    _check_key_usage(signature, signer)
    trusted, links = _check_chain(signer, certificates[1:], anchors, signing_time)
    revocation_checked = _check_revocations(signature, links, anchors, signing_time)

    data_ids = tuple(i for i in signed_ids if i != properties.get("Id"))
    if not data_ids:
        raise _invalid(signature, "it signs its own properties only, no block of the flow")
    return SignatureCheck(
        signature_id=signature.get("Id"),
        signed_ids=data_ids,
        signer_subject=signer.subject.rfc4514_string(),
        signer_serial=str(signer.serial_number),
        signer_sha256=signer.fingerprint(hashes.SHA256()).hex(),
        signing_time=signing_time,
        trusted_chain=trusted,
        revocation_checked=revocation_checked,
    )


def _canonicalisation(signature: etree._Element, signed_info: etree._Element) -> bool:
    method = signed_info.find(f"{{{DS}}}CanonicalizationMethod")
    algorithm = None if method is None else method.get("Algorithm")
    if algorithm not in CANONICALISATIONS:
        raise _invalid(signature, f"canonicalisation {algorithm} is not accepted")
    return CANONICALISATIONS[algorithm]


def _check_reference(
    tree: etree._ElementTree, signature: etree._Element, reference: etree._Element
) -> str:
    uri = reference.get("URI") or ""
    if not uri.startswith("#") or len(uri) < 2:
        raise _invalid(signature, f"reference {uri!r} does not point at an Id of the flow")
    target_id = uri[1:]
    found = _BY_ID(tree, id=target_id)
    assert isinstance(found, list)
    if len(found) != 1:
        raise _invalid(
            signature, f"reference #{target_id} matches {len(found)} elements, not exactly one"
        )
    target = found[0]
    assert isinstance(target, etree._Element)

    exclusive = True
    enveloped = False
    for transform in reference.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform"):
        algorithm = transform.get("Algorithm")
        if algorithm == ENVELOPED:
            enveloped = True
        elif algorithm in CANONICALISATIONS:
            exclusive = CANONICALISATIONS[algorithm]
        else:
            raise _invalid(signature, f"transform {algorithm} is not accepted")
    digest_method = reference.find(f"{{{DS}}}DigestMethod")
    if digest_method is None or digest_method.get("Algorithm") != SHA256:
        raise _invalid(signature, f"reference #{target_id} is not digested with SHA-256")

    if enveloped:
        target = _without_signature(target, signature)
    digest = base64.b64encode(hashlib.sha256(_canonical(target, exclusive)).digest()).decode()
    expected = "".join((reference.findtext(f"{{{DS}}}DigestValue") or "").split())
    if digest != expected:
        raise _invalid(
            signature, f"the content of #{target_id} changed after signing (digest mismatch)"
        )
    return target_id


def _without_signature(target: etree._Element, signature: etree._Element) -> etree._Element:
    """A copy of ``target`` without ``signature`` (the enveloped-signature transform)."""
    path = _path_from(target, signature)
    copied = copy.deepcopy(target)
    if path is None:
        return copied
    node = copied
    for index in path:
        node = node[index]
    parent = node.getparent()
    assert parent is not None
    # Keep the text after the signature with its previous sibling, as the transform does.
    parent.remove(node)
    return copied


def _path_from(ancestor: etree._Element, element: etree._Element) -> list[int] | None:
    path: list[int] = []
    node: etree._Element | None = element
    while node is not None and node is not ancestor:
        parent = node.getparent()
        if parent is None:
            return None
        path.append(parent.index(node))
        node = parent
    return list(reversed(path)) if node is ancestor else None


def _certificates(signature: etree._Element) -> list[x509.Certificate]:
    encoded = signature.findall(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    if not encoded:
        raise _invalid(signature, "KeyInfo carries no X509Certificate")
    try:
        return [
            x509.load_der_x509_certificate(base64.b64decode("".join((e.text or "").split())))
            for e in encoded
        ]
    except ValueError as exc:
        raise _invalid(signature, f"a certificate of KeyInfo cannot be read: {exc}") from exc


def _check_value(
    signature: etree._Element,
    signed_info: etree._Element,
    value: etree._Element,
    signer: x509.Certificate,
    exclusive: bool,
) -> None:
    key = signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _invalid(signature, "the signer's key is not an RSA key")
    try:
        raw = base64.b64decode("".join((value.text or "").split()), validate=True)
        key.verify(raw, _canonical(signed_info, exclusive), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError) as exc:
        raise _invalid(signature, "the signature value does not match SignedInfo") from exc


def _signed_properties(
    tree: etree._ElementTree, signature: etree._Element, signed_ids: Sequence[str]
) -> etree._Element:
    for namespace in XADES_NAMESPACES:
        for properties in signature.iter(f"{{{namespace}}}SignedProperties"):
            if properties.get("Id") in signed_ids:
                return properties
    raise _invalid(signature, "no XAdES SignedProperties referenced by the signature")


def _xades(properties: etree._Element, path: str) -> etree._Element | None:
    namespace = etree.QName(properties).namespace
    return properties.find(path.replace("x:", f"{{{namespace}}}"))


def _signing_time(signature: etree._Element, properties: etree._Element, now: datetime) -> datetime:
    element = _xades(properties, "x:SignedSignatureProperties/x:SigningTime")
    text = (element.text or "").strip() if element is not None else ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid(signature, f"SigningTime {text!r} is missing or unreadable") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now + CLOCK_SKEW:
        raise _invalid(signature, f"SigningTime {text} is in the future")
    return moment


def _check_cert_digest(
    signature: etree._Element, properties: etree._Element, signer: x509.Certificate
) -> None:
    path = "x:SignedSignatureProperties/x:SigningCertificate/x:Cert/x:CertDigest/"
    method = _xades(properties, path + "x:DigestMethod")
    value = _xades(properties, path + "x:DigestValue")
    if method is None or value is None:
        raise _invalid(signature, "SigningCertificate/CertDigest is missing")
    algorithm = method.get("Algorithm")
    der = signer.public_bytes(serialization.Encoding.DER)
    if algorithm == SHA256:
        digest = hashlib.sha256(der).digest()
    elif algorithm == SHA1:
        digest = hashlib.sha1(der, usedforsecurity=False).digest()
    else:
        raise _invalid(signature, f"CertDigest algorithm {algorithm} is not accepted")
    if base64.b64encode(digest).decode() != "".join((value.text or "").split()):
        raise _invalid(signature, "CertDigest is not the digest of the certificate in KeyInfo")


def _check_valid_at(
    signature: etree._Element, certificate: x509.Certificate, moment: datetime
) -> None:
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise PesSignerUntrusted(
            f"Signature {signature.get('Id')}: the certificate of"
            f" {certificate.subject.rfc4514_string()} is valid from"
            f" {certificate.not_valid_before_utc.isoformat()} to"
            f" {certificate.not_valid_after_utc.isoformat()}, not at the signing time"
            f" {moment.isoformat()}"
        )


def _check_key_usage(signature: etree._Element, certificate: x509.Certificate) -> None:
    """A certificate that states its key usages must allow signing (digitalSignature or
    nonRepudiation): an encryption certificate does not sign a PES flow. Without the
    extension, RFC 5280 allows any use."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if usage.digital_signature or usage.content_commitment:
        return
    raise PesSignerUntrusted(
        f"Signature {signature.get('Id')}: the certificate of"
        f" {certificate.subject.rfc4514_string()} is not for signing: its key usage allows"
        " neither digitalSignature nor nonRepudiation"
    )


def _check_chain(
    signer: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    moment: datetime,
) -> tuple[bool, list[tuple[x509.Certificate, x509.Certificate]]]:
    """Whether the signer chains to a trusted authority (False when no anchors are
    configured), and the links (certificate, its issuer) on the way; none for a signer
    trusted as such."""
    links: list[tuple[x509.Certificate, x509.Certificate]] = []
    if not anchors.configured:
        return False, links
    current = signer
    for _ in range(MAX_CHAIN):
        if current in anchors.certificates:
            return True, links
        issuer = _issuer_of(current, anchors.certificates) or _issuer_of(current, intermediates)
        if issuer is None:
            break
        if not issuer.not_valid_before_utc <= moment <= issuer.not_valid_after_utc:
            break
        links.append((current, issuer))
        if issuer in anchors.certificates:
            return True, links
        current = issuer
    raise PesSignerUntrusted(
        f"The signer {signer.subject.rfc4514_string()} does not chain to a trusted authority"
        " valid at the signing time"
    )


def _check_revocations(
    signature: etree._Element,
    links: Sequence[tuple[x509.Certificate, x509.Certificate]],
    anchors: TrustAnchors,
    moment: datetime,
) -> bool:
    """Refuse a link revoked at or before ``moment``; whether every link had a list."""
    covered = bool(links)
    for certificate, issuer in links:
        lists = [
            crl
            for crl in anchors.revocation_lists
            if crl.issuer == issuer.subject and _signed_by(crl, issuer)
        ]
        if not lists:
            covered = False
            continue
        for crl in lists:
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None and revoked.revocation_date_utc <= moment:
                raise PesSignerUntrusted(
                    f"Signature {signature.get('Id')}: the certificate of"
                    f" {certificate.subject.rfc4514_string()} was revoked on"
                    f" {revoked.revocation_date_utc.isoformat()}, before the signing time"
                    f" {moment.isoformat()}"
                )
    return covered


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False  # the keys RGS authorities sign with
    return crl.is_signature_valid(key)


def _issuer_of(
    certificate: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None
