"""Document bytes in object storage, addressed by their SHA-256.

One interface for every service: the local folder is the embedded default, and
:class:`S3ObjectStore` keeps objects in an S3-compatible bucket (``KANOL_STORAGE=s3``).
Either way an object's address is the SHA-256 of its content, its SHA-512 is computed on
the way in, and no half-written object ever sits under a valid address: the local store
renames a finished temporary file into place, S3 publishes an object only when its upload
completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol

import anyio

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

CHUNK_SIZE = 1024 * 1024
# The local store writes a new object under this name first, then renames it into place.
INCOMING_PREFIX = ".incoming-"


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    sha512: str
    size: int


@dataclass(frozen=True)
class ListedObject:
    """An object found in the store, as :meth:`ObjectStore.list_objects` yields it."""

    sha256: str
    size: int
    modified_at: datetime


class ObjectStore(Protocol):
    async def put(self, data: bytes) -> StoredObject: ...

    async def put_file(self, file: IO[bytes]) -> StoredObject: ...

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> StoredObject: ...

    async def get(self, sha256: str) -> bytes: ...

    def open_chunks(self, sha256: str) -> AsyncIterator[bytes]:
        """The object's content in chunks; raises :class:`ObjectNotFound` on first read."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def list_objects(self) -> AsyncIterator[ListedObject]:
        """Every object under a content address, in no particular order."""
        ...

    async def remove_leftovers(self, older_than: datetime) -> int:
        """Remove what interrupted writes left before ``older_than`` (temporary files,
        unfinished uploads), never a stored object; how many were removed."""
        ...

    async def close(self) -> None: ...


class ObjectNotFound(LookupError):
    pass


class LocalObjectStore:
    """Objects under ``root/ab/cd/<sha256>``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if not _is_hex(sha256, 64):
            raise ObjectNotFound(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes) -> StoredObject:
        # The whole write in one worker thread: for a small object a thread hop costs more
        # than the hashing and the writing.
        return await anyio.to_thread.run_sync(self._put_bytes, data)

    async def put_file(self, file: IO[bytes]) -> StoredObject:
        """Store an open file's content, read from its start, in one worker thread."""
        return await anyio.to_thread.run_sync(self._put_file, file)

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> StoredObject:
        sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=INCOMING_PREFIX)
        try:
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    sha256.update(chunk)
                    sha512.update(chunk)
                    size += len(chunk)
                    await anyio.to_thread.run_sync(file.write, chunk)
                await anyio.to_thread.run_sync(_flush_and_sync, file)
            stored = StoredObject(sha256.hexdigest(), sha512.hexdigest(), size)
            await anyio.to_thread.run_sync(_move_into_place, temporary, self.path_of(stored.sha256))
        except BaseException:
            await anyio.Path(temporary).unlink(missing_ok=True)
            raise
        return stored

    def _put_bytes(self, data: bytes) -> StoredObject:
        def write(file: BinaryIO) -> StoredObject:
            file.write(data)
            return StoredObject(
                hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
            )

        return self._write_into_place(write)

    def _put_file(self, source: IO[bytes]) -> StoredObject:
        def write(file: BinaryIO) -> StoredObject:
            sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
            source.seek(0)
            while chunk := source.read(CHUNK_SIZE):
                sha256.update(chunk)
                sha512.update(chunk)
                size += len(chunk)
                file.write(chunk)
            return StoredObject(sha256.hexdigest(), sha512.hexdigest(), size)

        return self._write_into_place(write)

    def _write_into_place(self, write: Callable[[BinaryIO], StoredObject]) -> StoredObject:
        """Blocking: write a temporary file, sync it, rename it to its content's address."""
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=INCOMING_PREFIX)
        try:
            with os.fdopen(fd, "wb") as file:
                stored = write(file)
                _flush_and_sync(file)
            _move_into_place(temporary, self.path_of(stored.sha256))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return stored

    async def get(self, sha256: str) -> bytes:
        path = self.path_of(sha256)
        try:
            return await anyio.Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(sha256) from exc

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        path = self.path_of(sha256)
        if not path.exists():
            raise ObjectNotFound(sha256)
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_SIZE):
                yield chunk

    async def open_chunks(self, sha256: str) -> AsyncIterator[bytes]:
        path = self.path_of(sha256)
        try:
            file = await anyio.open_file(path, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(sha256) from exc
        async with file:
            while chunk := await file.read(CHUNK_SIZE):
                yield chunk

    async def exists(self, sha256: str) -> bool:
        try:
            return await anyio.Path(self.path_of(sha256)).exists()
        except ObjectNotFound:
            return False

    async def delete(self, sha256: str) -> None:
        await anyio.Path(self.path_of(sha256)).unlink(missing_ok=True)

    async def list_objects(self) -> AsyncIterator[ListedObject]:
        # One thread hop per folder of the two levels: a store of millions of objects is
        # listed as it is walked, never held in memory.
        for first in await anyio.to_thread.run_sync(_hex_folders, self.root):
            for second in await anyio.to_thread.run_sync(_hex_folders, first):
                for listed in await anyio.to_thread.run_sync(_objects_in, second):
                    yield listed

    async def remove_leftovers(self, older_than: datetime) -> int:
        return await anyio.to_thread.run_sync(self._remove_leftovers, older_than.timestamp())

    def _remove_leftovers(self, before: float) -> int:
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.name.startswith(INCOMING_PREFIX) or not entry.is_file():
                continue
            if entry.stat().st_mtime >= before:
                continue
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
        return removed

    async def close(self) -> None:
        return None


def _hex_folders(parent: Path) -> list[Path]:
    """The folders of ``parent`` named as the store names them: two hex digits."""
    return sorted(
        Path(entry.path)
        for entry in os.scandir(parent)
        if entry.is_dir() and _is_hex(entry.name, 2)
    )


def _objects_in(folder: Path) -> list[ListedObject]:
    """The objects of ``root/ab/cd``: files named by a SHA-256 starting with ``abcd``."""
    expected = folder.parent.name + folder.name
    listed = []
    for entry in os.scandir(folder):
        if not _is_hex(entry.name, 64) or not entry.name.startswith(expected):
            continue
        if not entry.is_file():
            continue
        status = entry.stat()
        modified_at = datetime.fromtimestamp(status.st_mtime, UTC)
        listed.append(ListedObject(entry.name, status.st_size, modified_at))
    return listed


def _is_hex(name: str, length: int) -> bool:
    return len(name) == length and all(c in "0123456789abcdef" for c in name)


def _flush_and_sync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _move_into_place(temporary: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(temporary).replace(target)


@dataclass(frozen=True)
class S3Location:
    """Where an :class:`S3ObjectStore` keeps its objects, and the keys to reach them."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    prefix: str = "objects/"


# S3 refuses multipart parts under 5 MiB (but the last); 8 MiB keeps a part per request
# cheap in memory and the part count of a 2 GiB transfer at 256.
S3_PART_SIZE = 8 * 1024 * 1024
_S3_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# Where a stream waits, under the store's prefix, until its address is known.
_S3_INCOMING = "incoming/"


class S3ObjectStore:
    """Objects in an S3-compatible bucket under ``prefix/ab/cd/<sha256>``, SHA-512 in metadata.

    The client is opened on first use and closed by :meth:`close`. Content that is already
    stored is not uploaded again. A stream of unknown content is uploaded in parts to a
    temporary key while it is hashed, then copied to its address and the temporary key
    removed, so only complete objects ever appear under an address.
    """

    def __init__(self, location: S3Location, *, part_size: int = S3_PART_SIZE) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 needs multipart parts of at least 5 MiB.")
        self.location = location
        self.part_size = part_size
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None
        self._opening = asyncio.Lock()

    def key_of(self, sha256: str) -> str:
        if not _is_hex(sha256, 64):
            raise ObjectNotFound(sha256)
        return f"{self.location.prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    async def client(self) -> S3Client:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                config = AioConfig(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 5, "mode": "standard"},
                    # S3-compatible servers do not all know the newer checksum headers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                self._client = await self._stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=self.location.endpoint_url,
                        aws_access_key_id=self.location.access_key_id,
                        aws_secret_access_key=self.location.secret_access_key,
                        region_name=self.location.region,
                        config=config,
                    )
                )
        return self._client

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (for development and tests)."""
        from botocore.exceptions import ClientError

        s3 = await self.client()
        try:
            await s3.head_bucket(Bucket=self.location.bucket)
        except ClientError:
            await s3.create_bucket(Bucket=self.location.bucket)

    async def put(self, data: bytes) -> StoredObject:
        stored = await anyio.to_thread.run_sync(_fingerprint_bytes, data)
        if await self.exists(stored.sha256):
            return stored
        s3 = await self.client()
        await s3.put_object(
            Bucket=self.location.bucket,
            Key=self.key_of(stored.sha256),
            Body=data,
            Metadata={"sha512": stored.sha512},
        )
        return stored

    async def put_file(self, file: IO[bytes]) -> StoredObject:
        """Hash the file, then upload it from its start in parts unless already stored."""
        stored = await anyio.to_thread.run_sync(_fingerprint_file, file)
        if await self.exists(stored.sha256):
            return stored
        file.seek(0)

        async def parts() -> AsyncIterator[bytes]:
            while chunk := await anyio.to_thread.run_sync(file.read, self.part_size):
                yield chunk

        await self._upload(self.key_of(stored.sha256), parts(), {"sha512": stored.sha512})
        return stored

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> StoredObject:
        sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0

        async def hashed() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in _in_parts(chunks, self.part_size):
                await anyio.to_thread.run_sync(_update_both, sha256, sha512, chunk)
                size += len(chunk)
                yield chunk

        temporary = f"{self.location.prefix}{_S3_INCOMING}{uuid.uuid4().hex}"
        s3 = await self.client()
        try:
            await self._upload(temporary, hashed(), {})
            stored = StoredObject(sha256.hexdigest(), sha512.hexdigest(), size)
            if not await self.exists(stored.sha256):
                # TODO: CopyObject stops at 5 GiB; a larger stream needs UploadPartCopy,
                # so transfers beyond 5 GiB fail here (the settings cap them at 2 GiB).
                await s3.copy_object(
                    Bucket=self.location.bucket,
                    Key=self.key_of(stored.sha256),
                    CopySource={"Bucket": self.location.bucket, "Key": temporary},
                    Metadata={"sha512": stored.sha512},
                    MetadataDirective="REPLACE",
                )
        finally:
            with contextlib.suppress(Exception):
                await s3.delete_object(Bucket=self.location.bucket, Key=temporary)
        return stored

    async def _upload(
        self, key: str, parts: AsyncIterator[bytes], metadata: dict[str, str]
    ) -> None:
        """One PUT for a single part, a multipart upload otherwise (aborted on failure)."""
        s3 = await self.client()
        bucket = self.location.bucket
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:
            await s3.put_object(Bucket=bucket, Key=key, Body=first, Metadata=metadata)
            return

        upload = await s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)
        upload_id = upload["UploadId"]
        try:
            done: list[CompletedPartTypeDef] = []

            async def send(body: bytes) -> None:
                number = len(done) + 1
                part = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                done.append({"ETag": part["ETag"], "PartNumber": number})

            await send(first)
            await send(second)
            async for body in parts:
                await send(body)
            await s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    async def get(self, sha256: str) -> bytes:
        return b"".join([chunk async for chunk in self.open_chunks(sha256)])

    async def open_chunks(self, sha256: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        s3 = await self.client()
        try:
            response = await s3.get_object(Bucket=self.location.bucket, Key=self.key_of(sha256))
        except ClientError as exc:
            if _error_code(exc) in _S3_MISSING:
                raise ObjectNotFound(sha256) from exc
            raise
        async with response["Body"] as body:
            while chunk := await body.read(CHUNK_SIZE):
                yield chunk

    async def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            key = self.key_of(sha256)
        except ObjectNotFound:
            return False
        s3 = await self.client()
        try:
            await s3.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _S3_MISSING:
                return False
            raise
        return True

    async def sha512_of(self, sha256: str) -> str | None:
        """The SHA-512 recorded in the object's metadata when it was stored."""
        s3 = await self.client()
        head = await s3.head_object(Bucket=self.location.bucket, Key=self.key_of(sha256))
        return head.get("Metadata", {}).get("sha512")

    async def delete(self, sha256: str) -> None:
        s3 = await self.client()
        await s3.delete_object(Bucket=self.location.bucket, Key=self.key_of(sha256))

    async def list_objects(self) -> AsyncIterator[ListedObject]:
        s3 = await self.client()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        async for page in pages:
            for item in page.get("Contents", []):
                sha256 = item["Key"].rsplit("/", 1)[-1]
                if not _is_hex(sha256, 64) or self.key_of(sha256) != item["Key"]:
                    continue
                yield ListedObject(sha256, item["Size"], item["LastModified"])

    async def remove_leftovers(self, older_than: datetime) -> int:
        """Delete the temporary objects of interrupted streams and abort the multipart
        uploads started before ``older_than``."""
        s3 = await self.client()
        bucket, incoming = self.location.bucket, f"{self.location.prefix}{_S3_INCOMING}"
        removed = 0
        objects = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=incoming)
        async for page in objects:
            for item in page.get("Contents", []):
                if item["LastModified"] < older_than:
                    await s3.delete_object(Bucket=bucket, Key=item["Key"])
                    removed += 1
        uploads = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=self.location.prefix
        )
        async for listing in uploads:
            for upload in listing.get("Uploads", []):
                if upload["Initiated"] < older_than:
                    await s3.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed


def object_store(kind: str, local_root: Path, s3: S3Location | None) -> ObjectStore:
    """The store the settings name: ``local`` (a folder) or ``s3`` (a bucket)."""
    if kind == "local":
        return LocalObjectStore(local_root)
    if kind == "s3":
        if s3 is None or not s3.endpoint_url or not s3.bucket:
            raise ValueError("KANOL_STORAGE=s3 needs an S3 endpoint URL and a bucket.")
        return S3ObjectStore(s3)
    raise ValueError(f"Unknown storage {kind!r}: local or s3.")


def _fingerprint_bytes(data: bytes) -> StoredObject:
    return StoredObject(
        hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
    )


def _fingerprint_file(source: IO[bytes]) -> StoredObject:
    sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
    source.seek(0)
    while chunk := source.read(CHUNK_SIZE):
        _update_both(sha256, sha512, chunk)
        size += len(chunk)
    return StoredObject(sha256.hexdigest(), sha512.hexdigest(), size)


def _update_both(sha256: Any, sha512: Any, chunk: bytes) -> None:
    sha256.update(chunk)
    sha512.update(chunk)


async def _in_parts(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a stream's chunks into parts of ``size`` bytes (the last one shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
