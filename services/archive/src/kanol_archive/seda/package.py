"""A received SEDA package: its manifest and its files, spooled to disk, never in memory.

Two shapes arrive: a ZIP holding ``manifest.xml`` and the files it names (the State's
archive software's shape), or a multipart/form-data body with a ``manifest`` part and one
file part per object, named by the object's ``Uri`` (the regional archive's shape). Either
becomes a :class:`Package`: the manifest's bytes, and a map from a path in the package to
something that opens the file's bytes as a stream.

A ZIP is checked before any member is read: member count, total and per-member announced
sizes, compression ratio, names that could leave the package (``..``, absolute paths,
backslashes), symbolic links and duplicates. Reading a member then stops at its announced
size, so a lying header cannot inflate past the limits.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Final

from kanol_archive.seda.reader import safe_package_path
from kanol_archive.seda.schema import MAX_MANIFEST_BYTES

MANIFEST_NAME: Final = "manifest.xml"
CHUNK_SIZE: Final = 1024 * 1024


class PackageRefused(ValueError):
    """The container itself cannot be read safely: no ATR can be built from it."""

    def __init__(self, reasons: list[str] | str, *, too_large: bool = False) -> None:
        self.reasons = [reasons] if isinstance(reasons, str) else reasons
        super().__init__("; ".join(self.reasons))
        self.too_large = too_large


@dataclass(frozen=True)
class PackageLimits:
    max_files: int
    max_unpacked_bytes: int
    max_compression_ratio: int
    # Members smaller than this are not judged on their ratio: a small text compresses well.
    ratio_floor_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class PackageFile:
    """One file of the package, opened on demand as a binary stream."""

    path: str
    size: int
    opener: Callable[[], IO[bytes]]
    # False when the stream belongs to someone else (a multipart part's spooled file),
    # who closes it once the request is done.
    owned: bool = True

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        stream = self.opener()
        try:
            yield stream
        finally:
            if self.owned:
                stream.close()

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes; stops with PackageRefused past the size it announced."""
        read = 0
        with self.open() as stream:
            while chunk := stream.read(CHUNK_SIZE):
                read += len(chunk)
                if read > self.size:
                    raise PackageRefused(
                        f"{self.path} holds more than the {self.size} bytes its header announces"
                    )
                yield chunk


@dataclass
class Package:
    manifest: bytes
    files: dict[str, PackageFile] = field(default_factory=dict)
    container: str = "zip"

    def find(self, path: str) -> PackageFile | None:
        """The file at ``path``, or the only file of that name when the sender dropped
        folders (a multipart part's filename often loses them)."""
        found = self.files.get(path)
        if found is not None:
            return found
        name = path.rsplit("/", 1)[-1]
        same_name = [item for key, item in self.files.items() if key.rsplit("/", 1)[-1] == name]
        return same_name[0] if len(same_name) == 1 else None


def open_zip(archive: zipfile.ZipFile, limits: PackageLimits) -> Package:
    """The package inside an open ZIP, after every check that needs no decompression."""
    members = archive.infolist()
    reasons: list[str] = []
    if len(members) > limits.max_files + 1:
        raise PackageRefused(
            f"the ZIP holds {len(members)} entries, more than the {limits.max_files} accepted"
        )
    announced = sum(member.file_size for member in members)
    if announced > limits.max_unpacked_bytes:
        raise PackageRefused(
            f"the ZIP unpacks to {announced} bytes, more than the "
            f"{limits.max_unpacked_bytes} accepted",
            too_large=True,
        )

    files: dict[str, PackageFile] = {}
    manifest_member: zipfile.ZipInfo | None = None
    for member in members:
        reason = _member_problem(member, limits)
        if reason:
            reasons.append(reason)
            continue
        if member.is_dir():
            continue
        if member.filename in files or (
            member.filename == MANIFEST_NAME and manifest_member is not None
        ):
            reasons.append(f"{member.filename} appears twice in the ZIP")
            continue
        if member.filename == MANIFEST_NAME:
            manifest_member = member
            continue
        files[member.filename] = PackageFile(
            member.filename, member.file_size, _member_opener(archive, member)
        )

    if reasons:
        raise PackageRefused(reasons)
    if manifest_member is None:
        raise PackageRefused(f"the ZIP has no {MANIFEST_NAME} at its root")
    if manifest_member.file_size > MAX_MANIFEST_BYTES:
        raise PackageRefused(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = b"".join(
        PackageFile(
            MANIFEST_NAME, manifest_member.file_size, _member_opener(archive, manifest_member)
        ).chunks()
    )
    return Package(manifest=manifest, files=files, container="zip")


def _member_problem(member: zipfile.ZipInfo, limits: PackageLimits) -> str | None:
    try:
        safe_package_path(member.filename.removesuffix("/") if member.is_dir() else member.filename)
    except ValueError as exc:
        return f"ZIP entry {exc}"
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"ZIP entry {member.filename!r} is a symbolic link"
    if member.flag_bits & 0x1:
        return f"ZIP entry {member.filename!r} is encrypted"
    if (
        member.file_size > limits.ratio_floor_bytes
        and member.file_size > member.compress_size * limits.max_compression_ratio
    ):
        return (
            f"ZIP entry {member.filename!r} expands {member.file_size} bytes from "
            f"{member.compress_size}, beyond a ratio of {limits.max_compression_ratio}"
        )
    return None


def _member_opener(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        return archive.open(member)

    return opener
