"""SEDA transfers as an authority's software would send them, for the tests."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime

from kanol_archive.seda.manifest import (
    AccessRule,
    AppraisalRule,
    ArchiveUnitDescription,
    CustomMetadata,
    DataObject,
    Keyword,
    TransferDescription,
    build_transfer,
)
from kanol_archive.seda.schema import SedaVersion, serialize

ARCHIVAL_AGENCY = "KANOL-SAE"


def description(
    files: dict[str, bytes],
    *,
    siren: str,
    message_identifier: str = "MSG-1",
    archival_agency: str = ARCHIVAL_AGENCY,
) -> TransferDescription:
    """A transfer of ``files`` (path in the package to content), each digest right."""
    announced = [
        (path, len(content), hashlib.sha512(content).hexdigest()) for path, content in files.items()
    ]
    return description_of(
        announced,
        siren=siren,
        message_identifier=message_identifier,
        archival_agency=archival_agency,
    )


def description_of(
    announced: list[tuple[str, int, str]],
    *,
    siren: str,
    message_identifier: str = "MSG-1",
    archival_agency: str = ARCHIVAL_AGENCY,
) -> TransferDescription:
    """A transfer of files given as (path in the package, size, SHA-512)."""
    objects = tuple(
        DataObject(
            id=f"BDO{position}",
            uri=path,
            filename=path.rsplit("/", 1)[-1],
            media_type="application/pdf",
            size=size,
            sha512=sha512,
        )
        for position, (path, size, sha512) in enumerate(announced, start=1)
    )
    unit = ArchiveUnitDescription(
        id="AU1",
        title="Registre des délibérations 2024",
        level="RecordGrp",
        description="Délibérations du conseil municipal",
        originating_identifier="REG-2024",
        keywords=(Keyword("conseil municipal"),),
        start_date=date(2024, 1, 1),
        end_date=date(2024, 12, 31),
        custom=(CustomMetadata("Matiere", "5.2"),),
        children=tuple(
            ArchiveUnitDescription(id=f"AU_{item.id}", title=item.filename, object_ids=(item.id,))
            for item in objects
        ),
    )
    return TransferDescription(
        message_identifier=message_identifier,
        date=datetime(2024, 12, 31, 12, 0, tzinfo=UTC),
        archival_agency=archival_agency,
        transferring_agency=siren,
        originating_agency=siren,
        submission_agency=siren,
        objects=objects,
        units=(unit,),
        appraisal=AppraisalRule("APP-00001", date(2025, 1, 1), "Keep"),
        access=AccessRule("ACC-00001", date(2025, 1, 1)),
        archival_agreement="ACCORD-DELIB",
    )


def manifest(described: TransferDescription, version: SedaVersion = SedaVersion.V2_1) -> bytes:
    return serialize(build_transfer(described, version), version)


def with_digest(described: TransferDescription, position: int, sha512: str) -> TransferDescription:
    objects = list(described.objects)
    objects[position] = replace(objects[position], sha512=sha512)
    return replace(described, objects=tuple(objects))


def zip_package(
    manifest_bytes: bytes | None,
    files: dict[str, bytes],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        if manifest_bytes is not None:
            archive.writestr("manifest.xml", manifest_bytes)
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()
