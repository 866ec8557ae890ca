"""Printable PDFs with Chinese text: one small builder over fpdf2 for every service that prints.

Patients' names, item names and units are Chinese, so the document embeds (a subset of) a CJK font.
The font is not shipped in the repository: `./run` installs Debian's `fonts-wqy-microhei` (Apache-2.0),
the Dockerfile does the same, and `PATIENTFLOW_PDF_FONT` points elsewhere if a host has another one.
A missing font is a clear error at the first print, never a PDF of empty boxes.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

__all__ = ["CJK_FONT_CANDIDATES", "FontMissing", "PdfDocument", "TableColumn", "cjk_font_path"]

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
_FONT_FAMILY = "cjk"


class FontMissing(RuntimeError):
    """No CJK font on this host: install `fonts-wqy-microhei` or set PATIENTFLOW_PDF_FONT."""


def cjk_font_path() -> Path:
    """The CJK font this host prints with: `PATIENTFLOW_PDF_FONT`, else the first Debian font found."""
    configured = os.environ.get("PATIENTFLOW_PDF_FONT")
    candidates = (configured,) if configured else CJK_FONT_CANDIDATES
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing(
        "no CJK font for PDFs: install Debian's fonts-wqy-microhei (./run does) "
        f"or set PATIENTFLOW_PDF_FONT; looked at {', '.join(c for c in candidates if c)}"
    )


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of a printed table: its heading and its share of the page width."""

    heading: str
    width: float = 1.0
    align: str = "LEFT"


class PdfDocument:
    """An A4 document written top to bottom: a title, lines of text, tables; `to_bytes()` at the end."""

    def __init__(
        self, *, title: str, created_at: datetime | None = None, author: str = "patientflow"
    ) -> None:
        self._pdf = FPDF(orientation="portrait", unit="mm", format="A4")
        self._pdf.set_title(title)
        self._pdf.set_author(author)
        if created_at is not None:  # the record's own time, so a reprint is byte-identical
            self._pdf.set_creation_date(created_at)
        # A .ttc holds several faces; the first (collection number 0) is the regular one.
        self._pdf.add_font(_FONT_FAMILY, fname=str(cjk_font_path()), collection_font_number=0)
        self._pdf.set_auto_page_break(auto=True, margin=15)
        self._pdf.add_page()
        self._pdf.set_font(_FONT_FAMILY, size=16)
        self._pdf.cell(w=0, h=10, text=title, new_x="LMARGIN", new_y="NEXT", align="C")
        self._pdf.set_font(_FONT_FAMILY, size=10)

    def line(self, text: str, *, size: float = 10) -> None:
        """A paragraph; long text wraps."""
        self._pdf.set_font(_FONT_FAMILY, size=size)
        self._pdf.multi_cell(w=0, h=size * 0.6, text=text, new_x="LMARGIN", new_y="NEXT")

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Label: value lines, e.g. the patient block at the top of a report."""
        for label, value in pairs:
            self.line(f"{label}: {value}")

    def gap(self, millimetres: float = 3) -> None:
        self._pdf.ln(millimetres)

    def table(
        self, columns: Sequence[TableColumn], rows: Sequence[Sequence[str]], *, size: float = 9
    ) -> None:
        """A bordered table with a heading row; rows are already formatted text."""
        self._pdf.set_font(_FONT_FAMILY, size=size)
        total = sum(column.width for column in columns)
        widths = tuple(column.width / total for column in columns)
        with self._pdf.table(
            col_widths=widths,
            text_align=tuple(column.align for column in columns),  # type: ignore[arg-type]
            headings_style=FontFace(emphasis=None, fill_color=(230, 230, 230)),
            line_height=size * 0.6,
        ) as table:
            heading = table.row()
            for column in columns:
                heading.cell(column.heading)
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(value)

    def to_bytes(self) -> bytes:
        return bytes(self._pdf.output())
