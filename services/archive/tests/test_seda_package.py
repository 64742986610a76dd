"""Reading a received package and checking it against its manifest, without a database."""

from __future__ import annotations

import io
import stat
import zipfile
from datetime import UTC, datetime

import pytest

from kanol_archive.seda.ingest import ExpectedAgencies, check_transfer
from kanol_archive.seda.package import Package, PackageLimits, PackageRefused, open_zip
from kanol_archive.seda.reader import ManifestRefused, read_transfer, safe_package_path
from kanol_archive.seda.reply import ReplyCode
from kanol_archive.seda.schema import SedaVersion

from .seda_samples import ARCHIVAL_AGENCY, description, manifest, with_digest, zip_package

SIREN = "213502388"
OTHER_SIREN = "222200001"
LIMITS = PackageLimits(max_files=10, max_unpacked_bytes=10 * 1024 * 1024, max_compression_ratio=50)
EXPECTED = ExpectedAgencies(ARCHIVAL_AGENCY, SIREN, {SIREN: None, OTHER_SIREN: None})
NOW = datetime(2024, 1, 1, tzinfo=UTC)
FILES = {"content/a.pdf": b"%PDF-1.7 a" * 100, "content/b.pdf": b"%PDF-1.7 b" * 100}


def _open(data: bytes, limits: PackageLimits = LIMITS) -> Package:
    return open_zip(zipfile.ZipFile(io.BytesIO(data)), limits)


def _failures(report_events: list[object]) -> list[str]:
    return [
        f"{event.type_code}: {event.detail}"  # type: ignore[attr-defined]
        for event in report_events
        if event.outcome is ReplyCode.KO  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize("version", list(SedaVersion))
def test_a_sound_package_passes_every_check(version: SedaVersion) -> None:
    data = zip_package(manifest(description(FILES, siren=SIREN), version), FILES)

    package = _open(data)
    transfer = read_transfer(package.manifest)
    report = check_transfer(transfer, package, EXPECTED, NOW)

    assert report.ok, _failures(list(report.events))
    assert transfer.version is version
    assert [item.announced.path for item in report.objects] == list(FILES)


def test_every_failure_is_reported_at_once() -> None:
    described = with_digest(description(FILES, siren=OTHER_SIREN), 0, "0" * 128)
    files = {"content/b.pdf": FILES["content/b.pdf"], "content/extra.pdf": b"extra"}
    package = _open(zip_package(manifest(described), files))

    report = check_transfer(read_transfer(package.manifest), package, EXPECTED, NOW)

    failures = _failures(list(report.events))
    assert not report.ok
    assert any(f.startswith("CHECK_AGENCIES") and "TransferringAgency" in f for f in failures)
    assert any("content/a.pdf is announced but not in the package" in f for f in failures)
    assert any("content/extra.pdf is in the package but not announced" in f for f in failures)


def test_a_wrong_fingerprint_and_a_wrong_size_are_caught() -> None:
    described = with_digest(description(FILES, siren=SIREN), 1, "ab" * 64)
    files = dict(FILES)
    files["content/a.pdf"] = FILES["content/a.pdf"] + b"!"
    package = _open(zip_package(manifest(described), files))

    report = check_transfer(read_transfer(package.manifest), package, EXPECTED, NOW)

    failures = _failures(list(report.events))
    assert any(f.startswith("CHECK_DIGEST") and "content/b.pdf" in f for f in failures)
    assert any(f.startswith("CHECK_DIGEST") and "content/a.pdf" in f for f in failures)
    assert any(f.startswith("CHECK_OBJECT_SIZE") and "content/a.pdf" in f for f in failures)


def test_an_unknown_archival_agency_is_refused() -> None:
    described = description(FILES, siren=SIREN, archival_agency="AUTRE-SAE")
    package = _open(zip_package(manifest(described), FILES))

    report = check_transfer(read_transfer(package.manifest), package, EXPECTED, NOW)

    assert any("ArchivalAgency AUTRE-SAE" in f for f in _failures(list(report.events)))


def test_an_invalid_manifest_is_refused_with_the_schema_errors() -> None:
    data = manifest(description(FILES, siren=SIREN)).replace(b"<Title>", b"<Titre>", 1)
    data = data.replace(b"</Title>", b"</Titre>", 1)

    with pytest.raises(ManifestRefused) as refused:
        read_transfer(data)

    assert refused.value.type_code == "CHECK_SEDA"
    assert refused.value.message_identifier == "MSG-1"
    assert any("ArchiveUnit/Content" in reason for reason in refused.value.reasons)


@pytest.mark.parametrize(
    "name",
    ["../evil.pdf", "/etc/passwd", "content/../../evil", "C:/evil", "a\\b", "a//b", "./a", ""],
)
def test_a_path_that_leaves_the_package_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        safe_package_path(name)


def test_a_manifest_uri_that_leaves_the_package_is_refused() -> None:
    data = manifest(description({"content/a.pdf": b"a"}, siren=SIREN))
    data = data.replace(b"<Uri>content/a.pdf</Uri>", b"<Uri>../../etc/passwd</Uri>")

    with pytest.raises(ManifestRefused) as refused:
        read_transfer(data)

    assert "leaves the package" in refused.value.reasons[0]


def test_a_zip_entry_that_climbs_out_is_refused() -> None:
    data = zip_package(b"<x/>", {"../../evil.sh": b"#!/bin/sh"})

    with pytest.raises(PackageRefused) as refused:
        _open(data)

    assert "leaves the package" in refused.value.reasons[0]


def test_a_symbolic_link_in_the_zip_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.xml", b"<x/>")
        link = zipfile.ZipInfo("content/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(PackageRefused) as refused:
        _open(buffer.getvalue())

    assert "symbolic link" in refused.value.reasons[0]


def test_a_zip_bomb_is_refused_before_it_is_inflated() -> None:
    # Two megabytes of zeros compress a thousand times over.
    data = zip_package(b"<x/>", {"content/zeros.bin": b"\0" * (2 * 1024 * 1024)})

    with pytest.raises(PackageRefused) as refused:
        _open(data)

    assert "beyond a ratio of 50" in refused.value.reasons[0]


def test_a_zip_that_unpacks_beyond_the_total_limit_is_refused() -> None:
    data = zip_package(b"<x/>", {"content/big.bin": bytes(range(256)) * 4096})
    small = PackageLimits(max_files=10, max_unpacked_bytes=512 * 1024, max_compression_ratio=50)

    with pytest.raises(PackageRefused) as refused:
        _open(data, small)

    assert refused.value.too_large


def test_too_many_entries_are_refused() -> None:
    files = {f"content/{n}.txt": b"x" for n in range(12)}

    with pytest.raises(PackageRefused) as refused:
        _open(zip_package(b"<x/>", files))

    assert "12" in refused.value.reasons[0] or "13" in refused.value.reasons[0]


def test_a_member_that_inflates_past_its_header_is_cut_off() -> None:
    data = bytearray(zip_package(b"<x/>", {"content/a.txt": b"A" * 1000}, compression=0))
    package = _open(bytes(data))
    item = package.files["content/a.txt"]
    lying = type(item)(item.path, 10, item.opener)

    with pytest.raises(PackageRefused):
        b"".join(lying.chunks())


def test_a_zip_without_manifest_is_refused() -> None:
    with pytest.raises(PackageRefused) as refused:
        _open(zip_package(None, FILES))

    assert "manifest.xml" in refused.value.reasons[0]
