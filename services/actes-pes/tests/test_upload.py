"""The upload reader streams: an oversize document is refused without reading the rest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from kanol_actes_pes.errors import DocumentTooLarge, UploadMalformed
from kanol_actes_pes.testing import make_pdf
from kanol_actes_pes.upload import check_pdf, read_acte_upload

BOUNDARY = "kanol-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CHUNK = 64 * 1024


def multipart_head() -> bytes:
    metadata = json.dumps({"numero_interne": "A1", "nature": 1})
    return (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="metadata"\r\n\r\n'
        f"{metadata}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="acte"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()


class EndlessUpload:
    """A client sending a PDF that never ends; counts what the server pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def stream(self) -> AsyncIterator[bytes]:
        yield multipart_head()
        yield b"%PDF-1.7\n"
        while True:
            self.pulled += CHUNK
            yield b"0" * CHUNK


async def test_an_oversize_document_stops_the_reading() -> None:
    upload = EndlessUpload()
    limit = 1024 * 1024

    with pytest.raises(DocumentTooLarge):
        await read_acte_upload(CONTENT_TYPE, None, upload.stream(), limit)

    assert limit <= upload.pulled <= limit + 2 * CHUNK


async def test_a_declared_oversize_body_is_refused_before_reading() -> None:
    upload = EndlessUpload()

    with pytest.raises(DocumentTooLarge):
        await read_acte_upload(CONTENT_TYPE, str(50 * 1024 * 1024), upload.stream(), 1024)

    assert upload.pulled == 0


async def test_a_well_formed_upload_is_spooled_and_hashed() -> None:
    pdf = make_pdf(pages=3)

    async def stream() -> AsyncIterator[bytes]:
        body = multipart_head() + pdf + f"\r\n--{BOUNDARY}--\r\n".encode()
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    upload = await read_acte_upload(CONTENT_TYPE, None, stream(), 1024 * 1024)
    try:
        assert json.loads(upload.metadata)["numero_interne"] == "A1"
        assert upload.pdf.size == len(pdf)
        assert upload.pdf.filename == "a.pdf"
        assert await check_pdf(upload.pdf) == 3
    finally:
        upload.pdf.close()


async def test_a_body_that_is_not_multipart_is_refused() -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b"{}"

    with pytest.raises(UploadMalformed):
        await read_acte_upload("application/json", None, stream(), 1024)
