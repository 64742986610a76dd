"""Reading ``POST /v1/actes``: a multipart/form-data body, streamed, within its limits.

Starlette's form parser would read a whole upload before the route could refuse it. This
reader pulls the request stream chunk by chunk, spools the PDF to a temporary file while
hashing it, and stops reading as soon as the document passes the size limit: an oversize
upload costs the limit, not its own size.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

import anyio
from pypdf import PdfReader
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from kanol_actes_pes.acte import MAX_ANNEXES
from kanol_actes_pes.errors import (
    DocumentCorrupted,
    DocumentMissing,
    DocumentNotPdf,
    DocumentTooLarge,
    MetadataInvalid,
    UploadMalformed,
)

METADATA_FIELD = "metadata"
DOCUMENT_FIELD = "acte"
ANNEXE_FIELD = "annexes"
PDF_MEDIA_TYPE = "application/pdf"
PDF_MAGIC = b"%PDF-"
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 8 + MAX_ANNEXES
# Multipart framing and the metadata around the document.
ENVELOPE_ALLOWANCE = 256 * 1024
# Kept in memory up to this size, then spooled to disk.
SPOOL_MEMORY_BYTES = 1024 * 1024


@dataclass
class ReceivedPdf:
    """The uploaded document, spooled; close it once stored."""

    file: IO[bytes]
    size: int
    sha256: str
    content_type: str
    filename: str | None

    def close(self) -> None:
        self.file.close()


@dataclass
class ActeUpload:
    metadata: bytes
    pdf: ReceivedPdf
    annexes: list[ReceivedPdf] = field(default_factory=list)

    def close(self) -> None:
        for document in (self.pdf, *self.annexes):
            document.close()


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


class _MultipartCollector:
    """Callbacks for python-multipart: small fields in memory, the document to a file."""

    def __init__(
        self,
        max_document_bytes: int,
        main_field: str = DOCUMENT_FIELD,
        extra_field: str = ANNEXE_FIELD,
    ) -> None:
        self.max_document_bytes = max_document_bytes
        self.main_field = main_field
        self.extra_field = extra_field
        self.file_fields = (main_field, extra_field)
        self.fields: dict[str, bytes] = {}
        self.document: ReceivedPdf | None = None
        self.error: Exception | None = None
        self._parts = 0
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        # Every document's bytes together, against the request's limit.
        self._total = 0
        self.annexes: list[ReceivedPdf] = []
        self._spooled: list[IO[bytes]] = []

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            self._fail(UploadMalformed(f"The request carries more than {MAX_PARTS} parts"))
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").lower()
        self._part.headers[name] = self._header_value.decode("latin-1")
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get("content-disposition"))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self._part.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
        content_type, _ = parse_options_header(self._part.headers.get("content-type"))
        self._part.content_type = content_type.decode("latin-1")
        if self._part.name in self.file_fields:
            self._start_document()

    def _start_document(self) -> None:
        if self._part.name == self.main_field and self.document is not None:
            self._fail(UploadMalformed(f"Only one file may be sent as '{self.main_field}'"))
            return
        if self._part.name == self.extra_field and len(self.annexes) >= MAX_ANNEXES:
            self._fail(UploadMalformed(f"At most {MAX_ANNEXES} files '{self.extra_field}'"))
            return
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._spooled.append(self._file)
        self._hash = hashlib.sha256()
        self._size = 0

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self._part.name not in self.file_fields:
            self._part.data += chunk
            if len(self._part.data) > MAX_FIELD_BYTES:
                self._fail(MetadataInvalid(f"The field '{self._part.name}' is too large"))
            return

        self._size += len(chunk)
        self._total += len(chunk)
        if self._total > self.max_document_bytes:
            self._fail(
                DocumentTooLarge(
                    f"The document exceeds the limit of {self.max_document_bytes} bytes",
                    max_bytes=self.max_document_bytes,
                )
            )
            return
        self._hash.update(chunk)
        assert self._file is not None
        self._file.write(chunk)

    def _on_part_end(self) -> None:
        if self.error is not None:
            return
        part = self._part
        if part.name not in self.file_fields:
            self.fields.setdefault(part.name, bytes(part.data))
            return
        assert self._file is not None
        received = ReceivedPdf(
            file=self._file,
            size=self._size,
            sha256=self._hash.hexdigest(),
            content_type=part.content_type,
            filename=part.filename,
        )
        self._file = None
        if part.name == self.main_field:
            self.document = received
        else:
            self.annexes.append(received)

    def discard(self) -> None:
        for file in self._spooled:
            file.close()


async def read_acte_upload(
    content_type: str | None,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    max_document_bytes: int,
) -> ActeUpload:
    """The metadata and the PDF of an upload, or the problem that refuses it.

    The document is checked for what it claims to be (content type, ``%PDF-`` magic);
    whether it really parses is :func:`check_pdf`'s job, run once the upload is in.
    """
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadMalformed("The request must be multipart/form-data with a boundary")
    limit = max_document_bytes + ENVELOPE_ALLOWANCE
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise DocumentTooLarge(
            f"The request exceeds the limit of {max_document_bytes} bytes for the document",
            max_bytes=max_document_bytes,
        )

    collector = _MultipartCollector(max_document_bytes)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        await _feed(parser, stream, collector, limit)
        return _upload_from(collector)
    except BaseException:
        collector.discard()
        raise


ANSWER_FILE_FIELD = "documents"


async def read_answer_upload(
    content_type: str | None,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    max_document_bytes: int,
) -> tuple[bytes, list[ReceivedPdf]]:
    """The ``metadata`` and the PDFs ``documents`` of an answer to the prefecture."""
    boundary, limit = _check_envelope(content_type, content_length, max_document_bytes)
    collector = _MultipartCollector(max_document_bytes, "-", ANSWER_FILE_FIELD)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        await _feed(parser, stream, collector, limit)
        metadata = collector.fields.get(METADATA_FIELD)
        if metadata is None:
            raise MetadataInvalid(f"The form field '{METADATA_FIELD}' (JSON) is missing")
        for position, document in enumerate(collector.annexes, start=1):
            _check_claims_pdf(document, f"The document {position}")
        return metadata, list(collector.annexes)
    except BaseException:
        collector.discard()
        raise


def _check_envelope(
    content_type: str | None, content_length: str | None, max_document_bytes: int
) -> tuple[bytes, int]:
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadMalformed("The request must be multipart/form-data with a boundary")
    limit = max_document_bytes + ENVELOPE_ALLOWANCE
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise DocumentTooLarge(
            f"The request exceeds the limit of {max_document_bytes} bytes for the documents",
            max_bytes=max_document_bytes,
        )
    return boundary, limit


async def _feed(
    parser: MultipartParser,
    stream: AsyncIterator[bytes],
    collector: _MultipartCollector,
    limit: int,
) -> None:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise DocumentTooLarge(f"The request exceeds {limit} bytes", max_bytes=limit)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise UploadMalformed(f"The multipart body cannot be parsed: {exc}") from exc
        # Stop pulling the stream at the first refusal: the rest is never read.
        if collector.error is not None:
            raise collector.error
    parser.finalize()
    if collector.error is not None:
        raise collector.error


def _upload_from(collector: _MultipartCollector) -> ActeUpload:
    metadata = collector.fields.get(METADATA_FIELD)
    if metadata is None:
        raise MetadataInvalid(f"The form field '{METADATA_FIELD}' (JSON) is missing")
    document = collector.document
    if document is None or document.size == 0:
        raise DocumentMissing(f"The form file '{DOCUMENT_FIELD}' (the acte's PDF) is missing")
    _check_claims_pdf(document, "The document")
    for position, annexe in enumerate(collector.annexes, start=1):
        if annexe.size == 0:
            raise DocumentMissing(f"The annexe {position} is empty")
        _check_claims_pdf(annexe, f"The annexe {position}")
    return ActeUpload(metadata=metadata, pdf=document, annexes=list(collector.annexes))


def _check_claims_pdf(document: ReceivedPdf, name: str) -> None:
    if document.content_type != PDF_MEDIA_TYPE:
        raise DocumentNotPdf(
            f"{name}'s content type is {document.content_type or 'missing'!r},"
            f" {PDF_MEDIA_TYPE} is required"
        )
    document.file.seek(0)
    if document.file.read(len(PDF_MAGIC)) != PDF_MAGIC:
        raise DocumentNotPdf(f"{name} does not start with %PDF-: it is not a PDF")


async def check_pdf(pdf: ReceivedPdf, name: str = "The PDF") -> int:
    """Parse the PDF and count its pages; a document pypdf cannot read is refused."""
    try:
        return await anyio.to_thread.run_sync(_count_pages, pdf.file)
    except Exception as exc:
        # pypdf reports damage through many exception types (its own, ValueError,
        # KeyError, IndexError...); for untrusted input any of them means "unreadable".
        raise DocumentCorrupted(
            f"{name} cannot be read: {type(exc).__name__}: {exc}", document=name
        ) from exc


def _count_pages(file: IO[bytes]) -> int:
    file.seek(0)
    reader = PdfReader(file, strict=False)
    pages = len(reader.pages)
    if pages == 0:
        raise ValueError("the PDF has no page")
    for page in reader.pages:
        _ = page.mediabox
    return pages
