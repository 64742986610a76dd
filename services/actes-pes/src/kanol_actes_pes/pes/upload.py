"""Reading ``POST /v1/pes/flows``: a raw XML body, or multipart/form-data with a ``flow`` part.

A PES flow is parsed whole by lxml anyway, so it is read into memory, but never beyond
the size limit: a declared oversize body is refused before reading, and the reading stops
as soon as the limit is passed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from kanol_actes_pes.pes.errors import PesNotXml, PesTooLarge, PesUploadMalformed

FLOW_FIELD = "flow"
XML_MEDIA_TYPES = {"application/xml", "text/xml"}
# Multipart framing around the flow.
ENVELOPE_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class FlowUpload:
    content: bytes
    filename: str | None


async def read_flow_upload(
    content_type: str | None,
    content_length: str | None,
    disposition: str | None,
    stream: AsyncIterator[bytes],
    limit: int,
) -> FlowUpload:
    media_type, options = parse_options_header(content_type or "")
    media = media_type.decode("latin-1").lower()
    if media in XML_MEDIA_TYPES:
        body = await _read(content_length, stream, limit)
        return FlowUpload(body, _disposition_filename(disposition))
    if media == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise PesUploadMalformed("multipart/form-data without a boundary")
        body = await _read(content_length, stream, limit + ENVELOPE_ALLOWANCE)
        return _flow_part(body, boundary, limit)
    raise PesNotXml(
        f"Send the PES_Aller as application/xml, or as the part {FLOW_FIELD!r} of"
        f" multipart/form-data, not as {media or 'an unnamed type'}"
    )


async def _read(content_length: str | None, stream: AsyncIterator[bytes], limit: int) -> bytes:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PesTooLarge(f"The flow declares {content_length} bytes, the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PesTooLarge(f"The flow exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _disposition_filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    _, options = parse_options_header(disposition)
    name = options.get(b"filename")
    return None if not name else name.decode("latin-1")


class _Collector:
    def __init__(self) -> None:
        self.parts: list[tuple[dict[bytes, bytes], bytearray]] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def on_part_begin(self) -> None:
        self._headers = {}
        self.parts.append((self._headers, bytearray()))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1][1].extend(data[start:end])

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()


def _flow_part(body: bytes, boundary: bytes, limit: int) -> FlowUpload:
    collector = _Collector()
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise PesUploadMalformed(f"The multipart body cannot be read: {exc}") from exc
    for headers, data in collector.parts:
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        if options.get(b"name") != FLOW_FIELD.encode():
            continue
        if len(data) > limit:
            raise PesTooLarge(f"The flow exceeds the limit of {limit} bytes")
        filename = options.get(b"filename")
        return FlowUpload(bytes(data), None if not filename else filename.decode("latin-1"))
    raise PesUploadMalformed(f"The multipart body has no part named {FLOW_FIELD!r}")
