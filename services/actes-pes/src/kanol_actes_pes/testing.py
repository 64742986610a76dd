"""Helpers for tests of actes-pes and of the flows that go through it (e2e, benches)."""

from __future__ import annotations

import io

from pypdf import PdfWriter

A4_POINTS = (595, 842)


def make_pdf(pages: int = 1, title: str | None = None) -> bytes:
    """A small, valid PDF of blank A4 pages, made on the fly (no binary in the repository)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(*A4_POINTS)
    if title:
        writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
