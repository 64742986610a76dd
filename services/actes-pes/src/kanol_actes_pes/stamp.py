"""The acknowledgement stamp: the acte's PDF with a box in the top-right of its first page.

As the reference tools print it once the prefecture acknowledged an acte: "Envoyé en
préfecture le ...", "Reçu en préfecture le ...", "ID : {identifiant_acte}". The box is
drawn with pypdf alone: a small content stream in Helvetica (a standard font, WinAnsi
encoding, nothing embedded) merged over the first page, whatever its size or rotation box.
"""

from __future__ import annotations

import io
from datetime import date

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
)

BOX_WIDTH = 250.0
LINE_HEIGHT = 11.0
FONT_SIZE = 8.0
MARGIN = 18.0
PADDING = 6.0


def stamp_lines(identifiant_acte: str, transmitted: date, received: date) -> list[str]:
    return [
        f"Envoyé en préfecture le {transmitted:%d/%m/%Y}",
        f"Reçu en préfecture le {received:%d/%m/%Y}",
        f"ID : {identifiant_acte}",
    ]


def stamp_pdf(pdf: bytes, identifiant_acte: str, transmitted: date, received: date) -> bytes:
    """The PDF with the acknowledgement box on its first page; every other page unchanged."""
    reader = PdfReader(io.BytesIO(pdf), strict=False)
    writer = PdfWriter(clone_from=reader)
    first = writer.pages[0]
    lines = stamp_lines(identifiant_acte, transmitted, received)
    overlay = _overlay(first, lines)
    first.merge_page(overlay, over=True)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _overlay(page: PageObject, lines: list[str]) -> PageObject:
    box = page.cropbox
    right, top = float(box.right), float(box.top)
    height = PADDING * 2 + LINE_HEIGHT * len(lines)
    left = right - MARGIN - BOX_WIDTH
    bottom = top - MARGIN - height

    commands = [
        "q",
        "1 1 1 rg 0 0 0 RG 0.8 w",
        f"{left:.2f} {bottom:.2f} {BOX_WIDTH:.2f} {height:.2f} re B",
        "0 0 0 rg",
        "BT",
        f"/KanolStamp {FONT_SIZE:.1f} Tf",
    ]
    y = top - MARGIN - PADDING - FONT_SIZE
    for line in lines:
        commands.append(f"1 0 0 1 {left + PADDING:.2f} {y:.2f} Tm ({_pdf_string(line)}) Tj")
        y -= LINE_HEIGHT
    commands += ["ET", "Q"]

    overlay = PageObject.create_blank_page(width=box.width, height=box.height)
    overlay.mediabox = page.mediabox
    stream = DecodedStreamObject()
    stream.set_data("\n".join(commands).encode("latin-1"))
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    overlay[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/KanolStamp"): font})}
    )
    overlay[NameObject("/Contents")] = stream
    overlay[NameObject("/MediaBox")] = ArrayObject([FloatObject(value) for value in page.mediabox])
    return overlay


def _pdf_string(text: str) -> str:
    # WinAnsi covers the French accents; anything beyond becomes '?', never an error.
    encoded = text.encode("cp1252", errors="replace").decode("latin-1")
    return encoded.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
