"""The checks of a received transfer, once its manifest is valid: agencies, files, fingerprints.

Every check runs to the end and every failure is kept, so one KO reply lists everything
the sender has to fix. The files are read as streams, chunk by chunk: a package of any size
costs a chunk of memory. Blocking (hashing and decompressing): run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from kanol_archive.seda.package import Package, PackageFile, PackageRefused
from kanol_archive.seda.reader import AnnouncedObject, ReceivedTransfer
from kanol_archive.seda.reply import (
    CHECK_AGENCIES,
    CHECK_CONTAINER,
    CHECK_DIGEST,
    CHECK_MANIFEST_OBJECTNUMBER,
    CHECK_OBJECT_SIZE,
    CHECK_SEDA,
    ReplyCode,
    ReplyEvent,
)


@dataclass(frozen=True)
class ExpectedAgencies:
    """Who may appear in a transfer sent by this caller to this archive.

    ``organisations`` maps each SIREN the manifest names to the SIREN of the organisation
    that covers it (its EPCI), for those the platform knows; a SIREN absent from it is an
    unknown agency.
    """

    archival_agency: str
    caller_siren: str
    organisations: Mapping[str, str | None] = field(default_factory=dict)

    def covers(self, siren: str) -> bool:
        """Whether the caller may transfer for ``siren``: itself, or a commune of its EPCI."""
        return siren == self.caller_siren or self.organisations.get(siren) == self.caller_siren


@dataclass(frozen=True)
class CheckedObject:
    announced: AnnouncedObject
    file: PackageFile
    sha256: str
    sha512: str
    size: int


@dataclass
class IngestReport:
    at: datetime
    events: list[ReplyEvent] = field(default_factory=list)
    objects: list[CheckedObject] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(event.outcome is ReplyCode.OK for event in self.events)

    def record(self, type_code: str, failures: list[tuple[str | None, str]]) -> None:
        """One OK event for a check that found nothing, or one KO event per failure."""
        if not failures:
            self.events.append(ReplyEvent(type_code, ReplyCode.OK, self.at))
            return
        self.events.extend(
            ReplyEvent(type_code, ReplyCode.KO, self.at, detail=detail, object_id=object_id)
            for object_id, detail in failures
        )


def check_transfer(
    transfer: ReceivedTransfer, package: Package, expected: ExpectedAgencies, at: datetime
) -> IngestReport:
    report = IngestReport(at=at)
    report.record(CHECK_SEDA, [])
    report.record(CHECK_AGENCIES, _agency_failures(transfer, expected))

    found, missing, extra = _match_files(transfer, package)
    report.record(CHECK_MANIFEST_OBJECTNUMBER, missing + extra)

    digest_failures: list[tuple[str | None, str]] = []
    size_failures: list[tuple[str | None, str]] = []
    container_failures: list[tuple[str | None, str]] = []
    for announced, package_file in found:
        try:
            checked = _fingerprint(announced, package_file)
        except (
            PackageRefused,
            zipfile.BadZipFile,
            zlib.error,
            OSError,
            EOFError,
            NotImplementedError,
        ) as exc:
            container_failures.append((announced.id, f"{announced.path} cannot be read: {exc}"))
            continue
        actual = checked.sha512 if announced.hashlib_name == "sha512" else checked.sha256
        if actual != announced.digest:
            digest_failures.append(
                (
                    announced.id,
                    f"{announced.path}: {announced.algorithm} is {actual}, "
                    f"the manifest announces {announced.digest}",
                )
            )
        if announced.size is not None and announced.size != checked.size:
            size_failures.append(
                (
                    announced.id,
                    f"{announced.path}: {checked.size} bytes, "
                    f"the manifest announces {announced.size}",
                )
            )
        report.objects.append(checked)
    report.record(CHECK_CONTAINER, container_failures)
    report.record(CHECK_DIGEST, digest_failures)
    report.record(CHECK_OBJECT_SIZE, size_failures)
    return report


def _agency_failures(
    transfer: ReceivedTransfer, expected: ExpectedAgencies
) -> list[tuple[str | None, str]]:
    failures: list[tuple[str | None, str]] = []
    if transfer.archival_agency != expected.archival_agency:
        failures.append(
            (
                None,
                f"ArchivalAgency {transfer.archival_agency} is not this archive "
                f"({expected.archival_agency})",
            )
        )
    agencies = (
        ("TransferringAgency", transfer.transferring_agency),
        ("OriginatingAgencyIdentifier", transfer.originating_agency),
        ("SubmissionAgencyIdentifier", transfer.submission_agency),
    )
    for name, identifier in agencies:
        if identifier is None and name != "TransferringAgency":
            continue
        if not identifier or identifier not in expected.organisations:
            failures.append((None, f"{name} {identifier!r} is not an organisation of the platform"))
        elif name == "TransferringAgency" and identifier != expected.caller_siren:
            failures.append((None, f"{name} {identifier} is not the caller's organisation"))
        elif name == "OriginatingAgencyIdentifier" and not expected.covers(identifier):
            failures.append(
                (None, f"{name} {identifier} is neither the caller nor one of its communes")
            )
    return failures


def _match_files(
    transfer: ReceivedTransfer, package: Package
) -> tuple[
    list[tuple[AnnouncedObject, PackageFile]],
    list[tuple[str | None, str]],
    list[tuple[str | None, str]],
]:
    found: list[tuple[AnnouncedObject, PackageFile]] = []
    missing: list[tuple[str | None, str]] = []
    used: set[str] = set()
    for announced in transfer.objects:
        package_file = package.find(announced.path)
        if package_file is None:
            missing.append((announced.id, f"{announced.path} is announced but not in the package"))
            continue
        if package_file.path in used:
            missing.append((announced.id, f"{announced.path} is announced by two objects"))
            continue
        used.add(package_file.path)
        found.append((announced, package_file))
    extra: list[tuple[str | None, str]] = [
        (None, f"{path} is in the package but not announced by the manifest")
        for path in sorted(set(package.files) - used)
    ]
    return found, missing, extra


def _fingerprint(announced: AnnouncedObject, package_file: PackageFile) -> CheckedObject:
    sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
    for chunk in package_file.chunks():
        sha256.update(chunk)
        sha512.update(chunk)
        size += len(chunk)
    return CheckedObject(announced, package_file, sha256.hexdigest(), sha512.hexdigest(), size)
