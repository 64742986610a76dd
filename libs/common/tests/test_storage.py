"""Both object stores behave the same: content addressed by SHA-256, SHA-512 computed on
the way in, streamed reads, deletion; S3 against a real SeaweedFS, in multipart uploads."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kanol_common.storage import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3Location,
    S3ObjectStore,
    object_store,
)

MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    location: S3Location = request.getfixturevalue("s3_location")
    s3 = S3ObjectStore(replace(location, bucket=f"t-{uuid.uuid4().hex[:12]}"), part_size=PART)
    await s3.ensure_bucket()
    yield s3
    await s3.close()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(store: ObjectStore, sha256: str) -> bytes:
    return b"".join([chunk async for chunk in store.open_chunks(sha256)])


async def test_an_object_is_stored_under_its_sha256_with_its_sha512(store: ObjectStore) -> None:
    data = b"%PDF-1.7 deliberation"

    stored = await store.put(data)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert stored.size == len(data)
    assert await store.exists(stored.sha256)
    assert await store.get(stored.sha256) == data
    assert await _read(store, stored.sha256) == data


async def test_storing_the_same_content_twice_keeps_one_object(store: ObjectStore) -> None:
    first = await store.put(b"same")
    second = await store.put(b"same")

    assert first == second
    assert await store.get(first.sha256) == b"same"


async def test_a_stream_of_several_parts_is_stored_whole(store: ObjectStore) -> None:
    data = os.urandom(2 * PART + 12345)  # three multipart parts on S3

    stored = await store.put_stream(_chunks(data, 700_000))

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert stored.size == len(data)
    assert await _read(store, stored.sha256) == data


async def test_a_file_is_stored_from_its_start(store: ObjectStore) -> None:
    data = os.urandom(PART + 1)
    file = io.BytesIO(data)
    file.seek(100)

    stored = await store.put_file(file)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.get(stored.sha256) == data


async def test_a_missing_object_is_not_found(store: ObjectStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert not await store.exists(missing)
    assert not await store.exists("not-a-hash")
    with pytest.raises(ObjectNotFound):
        await store.get(missing)
    with pytest.raises(ObjectNotFound):
        await _read(store, missing)


async def test_a_deleted_object_is_gone_and_deleting_again_is_harmless(
    store: ObjectStore,
) -> None:
    stored = await store.put(b"to be eliminated")

    await store.delete(stored.sha256)
    await store.delete(stored.sha256)

    assert not await store.exists(stored.sha256)


async def test_a_failed_stream_leaves_no_object(store: ObjectStore) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(PART)
        yield os.urandom(PART)
        raise ConnectionError("the sender went away")

    with pytest.raises(ConnectionError):
        await store.put_stream(failing())

    if isinstance(store, S3ObjectStore):
        s3 = await store.client()
        listing = await s3.list_objects_v2(Bucket=store.location.bucket)
        assert listing.get("KeyCount", 0) == 0
        uploads = await s3.list_multipart_uploads(Bucket=store.location.bucket)
        assert not uploads.get("Uploads")
    else:
        assert isinstance(store, LocalObjectStore)
        assert [path for path in store.root.rglob("*") if path.is_file()] == []


async def test_every_stored_object_is_listed_with_its_size_and_time(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    contents = [b"acte", b"annexe", os.urandom(PART + 1)]
    stored = [await store.put(contents[0]), await store.put(contents[1])]
    stored.append(await store.put_stream(_chunks(contents[2], MIB)))
    await _leave_leftovers(store)

    listed = {item.sha256: item async for item in store.list_objects()}

    assert set(listed) == {item.sha256 for item in stored}
    assert [listed[item.sha256].size for item in stored] == [len(c) for c in contents]
    after = datetime.now(UTC) + timedelta(minutes=1)
    assert all(before < item.modified_at < after for item in listed.values())


async def test_leftovers_of_interrupted_writes_go_once_old_enough(store: ObjectStore) -> None:
    kept = await store.put(b"deliberation")
    leftovers = await _leave_leftovers(store)

    assert await store.remove_leftovers(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.remove_leftovers(datetime.now(UTC) + timedelta(minutes=1)) == leftovers

    assert await store.remove_leftovers(datetime.now(UTC) + timedelta(minutes=1)) == 0
    assert await _read(store, kept.sha256) == b"deliberation"


async def _leave_leftovers(store: ObjectStore) -> int:
    """What a process stopped in the middle of writes leaves behind; how many leftovers."""
    if isinstance(store, S3ObjectStore):
        s3, bucket = await store.client(), store.location.bucket
        incoming = f"{store.location.prefix}incoming/{uuid.uuid4().hex}"
        await s3.put_object(Bucket=bucket, Key=incoming, Body=b"half a stream")
        key = store.key_of(hashlib.sha256(b"never finished").hexdigest())
        await s3.create_multipart_upload(Bucket=bucket, Key=key)
        return 2
    assert isinstance(store, LocalObjectStore)
    (store.root / ".incoming-stopped").write_bytes(b"half a file")
    return 1


async def test_s3_records_the_sha512_in_the_object_metadata(s3_location: S3Location) -> None:
    store = S3ObjectStore(replace(s3_location, bucket=f"t-{uuid.uuid4().hex[:12]}"))
    await store.ensure_bucket()
    try:
        stored = await store.put_stream(_chunks(b"ATR", 1))
        assert await store.sha512_of(stored.sha256) == hashlib.sha512(b"ATR").hexdigest()
    finally:
        await store.close()


def test_the_settings_choose_the_store(tmp_path: Path, s3_location: S3Location) -> None:
    assert isinstance(object_store("local", tmp_path, None), LocalObjectStore)
    assert isinstance(object_store("s3", tmp_path, s3_location), S3ObjectStore)
    with pytest.raises(ValueError, match="endpoint"):
        object_store("s3", tmp_path, replace(s3_location, endpoint_url=""))
    with pytest.raises(ValueError, match="Unknown storage"):
        object_store("ftp", tmp_path, None)
