"""Reading a received ``ArchiveTransfer``: what the archive checks before it takes it.

:func:`read_transfer` parses and validates the manifest, then extracts the header (message
identifier, agencies) and each ``BinaryDataObject`` with its announced fingerprint, size and
place in the package. It never trusts a name: a URI that climbs out of the package or is
absolute is refused here, before any file is looked at.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import Final

from lxml import etree

from kanol_archive.seda.schema import SedaVersion, SedaXmlError, parse, validation_errors

# The algorithms the archive can check, by the names SEDA senders use for them.
DIGEST_ALGORITHMS: Final = {
    "SHA-512": "sha512",
    "SHA512": "sha512",
    "SHA-256": "sha256",
    "SHA256": "sha256",
}
_HEX_LENGTH: Final = {"sha512": 128, "sha256": 64}
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class AnnouncedObject:
    """A ``BinaryDataObject`` as the manifest announces it."""

    id: str
    path: str
    filename: str
    media_type: str
    size: int | None
    algorithm: str
    digest: str

    @property
    def hashlib_name(self) -> str:
        return DIGEST_ALGORITHMS[self.algorithm.upper()]


@dataclass(frozen=True)
class ReceivedTransfer:
    """What the archive needs of a valid received manifest."""

    version: SedaVersion
    message_identifier: str
    archival_agency: str
    transferring_agency: str
    originating_agency: str | None
    submission_agency: str | None
    archival_agreement: str | None
    title: str
    start_date: date | None
    end_date: date | None
    objects: tuple[AnnouncedObject, ...]
    unit_count: int


class ManifestRefused(ValueError):
    """The manifest cannot be taken: every reason found, for the ATR."""

    def __init__(
        self,
        type_code: str,
        reasons: tuple[str, ...],
        *,
        version: SedaVersion | None = None,
        message_identifier: str | None = None,
    ) -> None:
        super().__init__("; ".join(reasons))
        self.type_code = type_code
        self.reasons = reasons
        self.version = version
        self.message_identifier = message_identifier


def read_transfer(data: bytes) -> ReceivedTransfer:
    """The transfer a manifest describes; raises :class:`ManifestRefused` with every reason."""
    try:
        root, version = parse(data)
    except SedaXmlError as exc:
        raise ManifestRefused("CHECK_SEDA", exc.errors) from exc

    ns = {"s": version.namespace}
    message_identifier = _text(root, "s:MessageIdentifier", ns)
    if etree.QName(root).localname != "ArchiveTransfer":
        raise ManifestRefused(
            "CHECK_SEDA",
            (f"the manifest is a {etree.QName(root).localname}, not an ArchiveTransfer",),
            version=version,
            message_identifier=message_identifier,
        )
    errors = validation_errors(root, version)
    if errors:
        raise ManifestRefused(
            "CHECK_SEDA", errors, version=version, message_identifier=message_identifier
        )
    assert message_identifier is not None  # required by the schema

    objects, object_errors = _announced_objects(root, ns)
    if object_errors:
        raise ManifestRefused(
            "CHECK_DIGEST", object_errors, version=version, message_identifier=message_identifier
        )

    units = root.findall(".//s:DescriptiveMetadata//s:ArchiveUnit", ns)
    return ReceivedTransfer(
        version=version,
        message_identifier=message_identifier,
        archival_agency=_text(root, "s:ArchivalAgency/s:Identifier", ns) or "",
        transferring_agency=_text(root, "s:TransferringAgency/s:Identifier", ns) or "",
        originating_agency=_text(
            root, "s:DataObjectPackage/s:ManagementMetadata/s:OriginatingAgencyIdentifier", ns
        ),
        submission_agency=_text(
            root, "s:DataObjectPackage/s:ManagementMetadata/s:SubmissionAgencyIdentifier", ns
        ),
        archival_agreement=_text(root, "s:ArchivalAgreement", ns),
        title=_text(root, ".//s:ArchiveUnit/s:Content/s:Title", ns) or message_identifier,
        start_date=_date(_text(root, ".//s:ArchiveUnit/s:Content/s:StartDate", ns)),
        end_date=_date(_text(root, ".//s:ArchiveUnit/s:Content/s:EndDate", ns)),
        objects=objects,
        unit_count=len(units),
    )


def _announced_objects(
    root: etree._Element, ns: dict[str, str]
) -> tuple[tuple[AnnouncedObject, ...], tuple[str, ...]]:
    objects: list[AnnouncedObject] = []
    errors: list[str] = []
    for element in root.iterfind(".//s:DataObjectPackage//s:BinaryDataObject", ns):
        object_id = element.get("id", "")
        digest_element = element.find("s:MessageDigest", ns)
        uri = _text(element, "s:Uri", ns)
        filename = _text(element, "s:FileInfo/s:Filename", ns)
        if element.find("s:Attachment", ns) is not None:
            errors.append(f"{object_id}: inline Attachment content is not accepted, use Uri")
            continue
        if digest_element is None or not (uri or filename):
            errors.append(f"{object_id}: a BinaryDataObject needs a Uri and a MessageDigest")
            continue
        path = uri or filename or ""
        try:
            objects.append(
                AnnouncedObject(
                    id=object_id,
                    path=safe_package_path(path),
                    filename=filename or PurePosixPath(path).name,
                    media_type=_text(element, "s:FormatIdentification/s:MimeType", ns)
                    or "application/octet-stream",
                    size=_size(_text(element, "s:Size", ns)),
                    algorithm=digest_element.get("algorithm", ""),
                    digest=_hex_digest(digest_element),
                )
            )
        except ValueError as exc:
            errors.append(f"{object_id}: {exc}")

    seen: set[str] = set()
    for item in objects:
        if item.path in seen:
            errors.append(f"{item.id}: {item.path} is announced by two objects")
        seen.add(item.path)
    return tuple(objects), tuple(errors)


def safe_package_path(name: str) -> str:
    """``name`` as a relative POSIX path inside the package; raises ValueError otherwise.

    Refuses what could reach outside the package once unpacked: absolute paths, drive
    letters, backslashes, ``..`` segments, empty segments and control characters.
    """
    if not name or len(name) > 1024:
        raise ValueError(f"{name[:80]!r} is not a usable file name")
    if "\\" in name or any(ord(char) < 32 for char in name):
        raise ValueError(f"{name!r} holds a backslash or a control character")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "://" in name:
        raise ValueError(f"{name!r} is an absolute path or URL, not a file of the package")
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"{name!r} leaves the package or has an empty segment")
    return name


def _hex_digest(element: etree._Element) -> str:
    algorithm = element.get("algorithm", "")
    name = DIGEST_ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise ValueError(f"digest algorithm {algorithm!r} is not one of SHA-512, SHA-256")
    value = (element.text or "").strip()
    if _HEX.match(value) and len(value) == _HEX_LENGTH[name]:
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) * 2 != _HEX_LENGTH[name]:
        raise ValueError(f"the {algorithm} digest is neither hexadecimal nor base64 of its length")
    return raw.hex()


def _size(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _text(element: etree._Element, path: str, ns: dict[str, str]) -> str | None:
    found = element.find(path, ns)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _date(text: str | None) -> date | None:
    # StartDate may be a dateTime, a year or a month: keep the day when there is one.
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None
