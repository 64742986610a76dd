"""Document bytes in object storage, addressed by their SHA-256.

One interface for every service; the local folder is the embedded default. Objects are
written to a temporary file and renamed into place, so a crash never leaves half an object
under a valid address.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

import anyio

CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    sha512: str
    size: int


class ObjectStore(Protocol):
    async def put(self, data: bytes) -> StoredObject: ...

    async def put_file(self, file: IO[bytes]) -> StoredObject: ...

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> StoredObject: ...

    async def get(self, sha256: str) -> bytes: ...

    async def exists(self, sha256: str) -> bool: ...


class ObjectNotFound(LookupError):
    pass


class LocalObjectStore:
    """Objects under ``root/ab/cd/<sha256>``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
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
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
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
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
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

    async def exists(self, sha256: str) -> bool:
        try:
            return await anyio.Path(self.path_of(sha256)).exists()
        except ObjectNotFound:
            return False


def _flush_and_sync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _move_into_place(temporary: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(temporary).replace(target)
