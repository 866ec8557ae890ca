"""Printable PDFs with Chinese text: one small builder over fpdf2 for every service that prints.

Patients' names, item names and units are Chinese, so the document embeds (a subset of) a CJK font.
The font is not shipped in the repository: `./run` installs Debian's `fonts-wqy-microhei` (Apache-2.0),
the Dockerfile does the same, and `PATIENTFLOW_PDF_FONT` points elsewhere if a host has another one.
A missing font is a clear error at the first print, never a PDF of empty boxes.
"""

import contextlib
import copy
import io
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fontTools import subset, ttLib
from fpdf import FPDF
from fpdf.fonts import FontFace, SubsetMap, TTFFont
from pypdf import PdfReader, PdfWriter

__all__ = [
    "CJK_FONT_CANDIDATES",
    "FontMissing",
    "PdfDocument",
    "StampLine",
    "TableColumn",
    "cjk_font_path",
    "prepare_font_in_background",
    "stamp",
]

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
_FONT_FAMILY = "cjk"
_FULL_FONT_FAMILY = "cjkfull"  # the whole font, added only for a character the common set lacks


def _common_codepoints() -> frozenset[int]:
    """What hospital paper uses: ASCII and Latin, Greek (μ), punctuation, arrows and maths, the CJK
    symbols and full-width forms, and every character of GB 2312 (its 6,763 hanzi and its symbols)."""
    ranges = [(0x20, 0x17F), (0x370, 0x3FF), (0x2000, 0x22FF), (0x2460, 0x24FF), (0x3000, 0x303F)]
    points = {point for low, high in ranges for point in range(low, high + 1)} | set(range(0xFF00, 0xFFF0))
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                points.add(ord(bytes((high, low)).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return frozenset(points)


@dataclass(frozen=True, slots=True)
class _CommonFont:
    """The CJK font cut down to the common characters, parsed once per process.

    Parsing the whole 50,000-glyph font and subsetting it again for every document cost ~1 s a PDF
    (fpdf2's `add_font`, then its subsetting at output); from this cut, a document costs ~0.1 s.
    `prototype` holds fpdf2's parsed metrics (widths, glyph ids), which rendering only reads; each
    document gets its own copy with its own glyph subset and its own `TTFont` over `data` (fpdf2
    subsets that in place when it writes the file).
    """

    data: bytes
    prototype: TTFFont
    codepoints: frozenset[int]

    def font_for(self, document: FPDF) -> TTFFont:
        font: TTFFont = copy.copy(self.prototype)
        font.i = len(document.fonts) + 1
        font.ttfont = ttLib.TTFont(io.BytesIO(self.data), recalcTimestamp=False, lazy=True)
        font.subset = SubsetMap(font)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        return font


_common_fonts: dict[Path, _CommonFont] = {}
_common_fonts_lock = threading.Lock()


def _cut(source: Path | bytes, codepoints: Iterable[int], family: str) -> _CommonFont:
    """`source` (a font file, or a cut's bytes) cut down to `codepoints`, parsed for fpdf2."""
    # No hinting, no layout tables (fpdf2 shapes nothing here): less for every document to parse.
    options = subset.Options(notdef_outline=True, recommended_glyphs=True, hinting=False)
    options.name_IDs, options.name_languages = ["*"], ["*"]
    options.layout_features = []
    options.drop_tables += ["FFTM", "GSUB", "GPOS", "GDEF"]  # FFTM: a timestamp fontTools can't cut
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=codepoints)
    buffer = io.BytesIO()
    opened = source if isinstance(source, Path) else io.BytesIO(source)
    with ttLib.TTFont(opened, recalcTimestamp=False, fontNumber=0, lazy=True) as full:
        subsetter.subset(full)
        full.save(buffer)
    data = buffer.getvalue()
    prototype = TTFFont(FPDF(), io.BytesIO(data), family, "")  # type: ignore[arg-type]
    return _CommonFont(data, prototype, frozenset(prototype.cmap))


def _common_font(path: Path) -> _CommonFont:
    """The cut-down font for `path`, made at the first document (a few seconds, once per process)."""
    with _common_fonts_lock:
        found = _common_fonts.get(path)
        if found is None:
            found = _common_fonts[path] = _cut(path, _common_codepoints(), _FONT_FAMILY)
        return found


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


def prepare_font_in_background() -> threading.Thread:
    """Cut the font now, in a daemon thread, so a service's first PDF does not pay the few seconds
    (a gateway deadline would run out). A missing font is left for the first print to report."""

    def prepare() -> None:
        with contextlib.suppress(FontMissing):
            _common_font(cjk_font_path())

    thread = threading.Thread(target=prepare, name="pdf-font", daemon=True)
    thread.start()
    return thread


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
        self._font_path = cjk_font_path()
        self._common = _common_font(self._font_path)
        self._pdf.fonts[_FONT_FAMILY] = self._common.font_for(self._pdf)
        self._full_font_added = False
        self._pdf.set_auto_page_break(auto=True, margin=15)
        self._pdf.add_page()
        self._pdf.set_font(_FONT_FAMILY, size=16)
        self._cover([title])
        self._pdf.cell(w=0, h=10, text=title, new_x="LMARGIN", new_y="NEXT", align="C")
        self._pdf.set_font(_FONT_FAMILY, size=10)

    def _cover(self, texts: Iterable[str]) -> None:
        """Before writing: a character outside the common set (a rare hanzi in a name) is drawn from the
        whole font, added to this document as a fallback the first time one is needed."""
        if self._full_font_added:
            return
        if any(ord(c) not in self._common.codepoints for text in texts for c in text if not c.isspace()):
            # A .ttc holds several faces; the first (collection number 0) is the regular one.
            self._pdf.add_font(_FULL_FONT_FAMILY, fname=str(self._font_path), collection_font_number=0)
            self._pdf.set_fallback_fonts([_FULL_FONT_FAMILY])
            self._full_font_added = True

    def line(self, text: str, *, size: float = 10) -> None:
        """A paragraph; long text wraps."""
        self._cover([text])
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
        self._cover([column.heading for column in columns])
        self._cover(value for values in rows for value in values)
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


# --- stamps: a few lines laid over a finished document ---

_STAMP_FAMILY = "cjkstamp"
_STAMP_FONTS_KEPT = 64
_stamp_fonts: dict[tuple[Path, frozenset[int]], _CommonFont] = {}


@dataclass(frozen=True, slots=True)
class StampLine:
    """One line of a stamp: its text, its baseline in mm from the top of the page (negative: from the
    bottom), its size in points, and whether it goes on the first page or the last."""

    text: str
    y: float
    size: float = 8
    last_page: bool = False


def _stamp_font(path: Path, texts: Iterable[str]) -> _CommonFont:
    """The common font cut to ASCII and the stamp's own characters: a stamp's texts are a few fixed
    labels around numbers and times, so the cut is made once and the stamp embeds a tiny font."""
    common = _common_font(path)
    wanted = frozenset(ord(c) for text in texts for c in text if ord(c) > 0x7E)
    key = (path, wanted)
    with _common_fonts_lock:
        found = _stamp_fonts.get(key)
        if found is None:
            points = set(range(0x20, 0x7F)) | (wanted & common.codepoints)
            found = _cut(common.data, points, _STAMP_FAMILY)
            if len(_stamp_fonts) >= _STAMP_FONTS_KEPT:
                _stamp_fonts.clear()
            _stamp_fonts[key] = found
        return found


def stamp(
    document: bytes,
    lines: Sequence[StampLine],
    *,
    created_at: datetime | None = None,
    characters: str = "",
) -> bytes:
    """`document` with `lines` laid over it (a copy mark, a print time) and, given, a new creation
    date: a few milliseconds where rendering the document again costs ~0.1 s. Nothing is re-flowed, so
    the lines go where the document leaves room (the top and bottom margins of an A4 `PdfDocument`).
    Characters outside the common set print as blanks (stamps carry fixed labels, not names).
    `characters`: every character the caller's stamps ever use, so all of them share one font cut."""
    font = _stamp_font(cjk_font_path(), [characters, *(line.text for line in lines)])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(document)))
    last = len(writer.pages) - 1
    by_page: dict[int, list[StampLine]] = {}
    for line in lines:
        by_page.setdefault(last if line.last_page else 0, []).append(line)
    # One overlay document, a page per stamped page: one small font embedded, once.
    overlay = FPDF(orientation="portrait", unit="mm", format="A4")
    overlay.fonts[_STAMP_FAMILY] = font.font_for(overlay)
    for on_page in by_page.values():
        overlay.add_page()
        for line in on_page:
            overlay.set_font(_STAMP_FAMILY, size=line.size)
            overlay.text(overlay.l_margin, line.y if line.y >= 0 else overlay.h + line.y, line.text)
    stamps = PdfReader(io.BytesIO(bytes(overlay.output()))).pages
    for index, page in enumerate(by_page):
        writer.pages[page].merge_page(stamps[index])
    if created_at is not None:
        writer.add_metadata({"/CreationDate": _pdf_date(created_at)})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _pdf_date(moment: datetime) -> str:
    """A PDF date string (`D:YYYYMMDDHHmmSS+HH'mm'`)."""
    offset = moment.strftime("%z") or "+0000"
    return f"D:{moment.strftime('%Y%m%d%H%M%S')}{offset[:3]}'{offset[3:]}'"
