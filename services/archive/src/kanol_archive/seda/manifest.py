"""Building a SEDA ``ArchiveTransfer`` manifest from a description of what is transferred.

The description (:class:`TransferDescription`) says it in the archive's words: agencies,
binary objects with their SHA-512, archive units with their descriptive metadata, the
appraisal and access rules. :func:`build_transfer` writes it in the element order the
schema imposes, and :func:`manifest_bytes` checks the result against the XSD: a manifest
this service builds that does not validate is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from lxml import etree

from kanol_archive.seda.schema import SedaVersion, serialize

# Kanol's own descriptive metadata (the acte's nature, matière...) goes where SEDA leaves
# room for it: the open end of an ArchiveUnit's Content, in a namespace of Kanol's.
KANOL_NS: Final = "urn:kanol:archive:seda:v1"
DIGEST_ALGORITHM: Final = "SHA-512"
# Versions of the code lists the values come from, as Vitam's referentials name them.
CODE_LIST_VERSIONS: Final = (
    ("ReplyCodeListVersion", "ReplyCodeListVersion0"),
    ("MessageDigestAlgorithmCodeListVersion", "MessageDigestAlgorithmCodeListVersion0"),
    ("MimeTypeCodeListVersion", "MimeTypeCodeListVersion0"),
    ("FileFormatCodeListVersion", "FileFormatCodeListVersion0"),
    ("AppraisalRuleCodeListVersion", "AppraisalRuleCodeListVersion0"),
    ("AccessRuleCodeListVersion", "AccessRuleCodeListVersion0"),
)


@dataclass(frozen=True)
class DataObject:
    """One file of the transfer (``BinaryDataObject``)."""

    id: str  # its xml:ID in the manifest, e.g. BDO1
    uri: str
    filename: str
    media_type: str
    size: int
    sha512: str


@dataclass(frozen=True)
class Keyword:
    content: str
    reference: str | None = None


@dataclass(frozen=True)
class CustomMetadata:
    """A descriptive field SEDA has no element for, written as ``kanol:<name>``."""

    name: str
    value: str


@dataclass(frozen=True)
class ArchiveUnitDescription:
    id: str
    title: str
    level: str = "Item"
    description: str | None = None
    document_type: str | None = None
    originating_identifier: str | None = None
    keywords: tuple[Keyword, ...] = ()
    start_date: date | None = None
    end_date: date | None = None
    custom: tuple[CustomMetadata, ...] = ()
    object_ids: tuple[str, ...] = ()
    children: tuple[ArchiveUnitDescription, ...] = ()


@dataclass(frozen=True)
class AppraisalRule:
    """When the archive may be appraised, and what happens then (Keep or Destroy)."""

    rule: str
    start_date: date
    final_action: str


@dataclass(frozen=True)
class AccessRule:
    rule: str
    start_date: date


@dataclass(frozen=True)
class TransferDescription:
    message_identifier: str
    date: datetime
    archival_agency: str
    transferring_agency: str
    originating_agency: str
    submission_agency: str
    objects: tuple[DataObject, ...]
    units: tuple[ArchiveUnitDescription, ...]
    appraisal: AppraisalRule
    access: AccessRule
    comment: str | None = None
    archival_agreement: str | None = None


class SedaWriter:
    """Appends elements of one SEDA namespace."""

    def __init__(self, version: SedaVersion) -> None:
        self.ns = version.namespace

    def root(self, name: str) -> etree._Element:
        # SEDA as the default namespace, as every SEDA tool writes it; lxml's stubs do not
        # allow the None key that means "default".
        nsmap: Any = {None: self.ns, "kanol": KANOL_NS}
        return etree.Element(f"{{{self.ns}}}{name}", nsmap=nsmap)

    def add(
        self,
        parent: etree._Element,
        name: str,
        text: str | None = None,
        **attributes: str,
    ) -> etree._Element:
        element = etree.SubElement(parent, f"{{{self.ns}}}{name}", attributes)
        if text is not None:
            element.text = text
        return element

    def add_optional(self, parent: etree._Element, name: str, text: str | None) -> None:
        if text:
            self.add(parent, name, text)

    def code_list_versions(self, parent: etree._Element, names: Sequence[str] = ()) -> None:
        versions = self.add(parent, "CodeListVersions")
        for name, value in CODE_LIST_VERSIONS:
            if not names or name in names:
                self.add(versions, name, value)

    def organisation(self, parent: etree._Element, name: str, identifier: str) -> None:
        self.add(self.add(parent, name), "Identifier", identifier)


def build_transfer(description: TransferDescription, version: SedaVersion) -> etree._Element:
    """The ``ArchiveTransfer`` element for ``description``; not yet checked against the XSD."""
    writer = SedaWriter(version)
    root = writer.root("ArchiveTransfer")
    writer.add_optional(root, "Comment", description.comment)
    writer.add(root, "Date", xml_datetime(description.date))
    writer.add(root, "MessageIdentifier", description.message_identifier)
    writer.add_optional(root, "ArchivalAgreement", description.archival_agreement)
    writer.code_list_versions(root)

    package = writer.add(root, "DataObjectPackage")
    for item in description.objects:
        _binary_data_object(writer, package, item)
    descriptive = writer.add(package, "DescriptiveMetadata")
    for unit in description.units:
        _archive_unit(writer, descriptive, unit)
    _management_metadata(writer, package, description)

    writer.organisation(root, "ArchivalAgency", description.archival_agency)
    writer.organisation(root, "TransferringAgency", description.transferring_agency)
    return root


def manifest_bytes(description: TransferDescription, version: SedaVersion) -> bytes:
    """The manifest as UTF-8 XML, valid against the SEDA schema of ``version``."""
    return serialize(build_transfer(description, version), version)


def _binary_data_object(writer: SedaWriter, package: etree._Element, item: DataObject) -> None:
    element = writer.add(package, "BinaryDataObject", id=item.id)
    writer.add(element, "DataObjectVersion", "BinaryMaster_1")
    writer.add(element, "Uri", item.uri)
    writer.add(element, "MessageDigest", item.sha512, algorithm=DIGEST_ALGORITHM)
    if item.size > 0:
        # SEDA's Size is a positive integer: an empty file has none.
        writer.add(element, "Size", str(item.size))
    formats = writer.add(element, "FormatIdentification")
    writer.add(formats, "MimeType", item.media_type)
    info = writer.add(element, "FileInfo")
    writer.add(info, "Filename", item.filename)


def _archive_unit(writer: SedaWriter, parent: etree._Element, unit: ArchiveUnitDescription) -> None:
    element = writer.add(parent, "ArchiveUnit", id=unit.id)
    content = writer.add(element, "Content")
    writer.add(content, "DescriptionLevel", unit.level)
    writer.add(content, "Title", unit.title)
    writer.add_optional(
        content, "OriginatingAgencyArchiveUnitIdentifier", unit.originating_identifier
    )
    writer.add_optional(content, "Description", unit.description)
    writer.add_optional(content, "DocumentType", unit.document_type)
    writer.add(content, "Language", "fr")
    writer.add(content, "DescriptionLanguage", "fr")
    for keyword in unit.keywords:
        keyword_element = writer.add(content, "Keyword")
        writer.add(keyword_element, "KeywordContent", keyword.content)
        writer.add_optional(keyword_element, "KeywordReference", keyword.reference)
    if unit.start_date is not None:
        writer.add(content, "StartDate", unit.start_date.isoformat())
    if unit.end_date is not None:
        writer.add(content, "EndDate", unit.end_date.isoformat())
    for custom in unit.custom:
        etree.SubElement(content, f"{{{KANOL_NS}}}{custom.name}").text = custom.value

    for child in unit.children:
        _archive_unit(writer, element, child)
    for object_id in unit.object_ids:
        reference = writer.add(element, "DataObjectReference")
        writer.add(reference, "DataObjectReferenceId", object_id)


def _management_metadata(
    writer: SedaWriter, package: etree._Element, description: TransferDescription
) -> None:
    management = writer.add(package, "ManagementMetadata")
    writer.add(management, "OriginatingAgencyIdentifier", description.originating_agency)
    writer.add(management, "SubmissionAgencyIdentifier", description.submission_agency)

    appraisal = writer.add(management, "AppraisalRule")
    writer.add(appraisal, "Rule", description.appraisal.rule)
    writer.add(appraisal, "StartDate", description.appraisal.start_date.isoformat())
    writer.add(appraisal, "FinalAction", description.appraisal.final_action)

    access = writer.add(management, "AccessRule")
    writer.add(access, "Rule", description.access.rule)
    writer.add(access, "StartDate", description.access.start_date.isoformat())


def xml_datetime(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
