"""The price catalogue (价格公示) as data: loaded from CSV, every load a version, prices by service date.

A file (`catalogue.csv` at start, or an upload to `POST /catalogue-versions`) is checked in full
before anything is loaded: every bad row is reported with its line, and one bad row loads nothing.
Each load is a new version; the newest is the catalogue in force, older ones stay queryable. A row is
one price period of one item: a price change is a new row (the old one given an `effective_to`), so a
charge is priced by its service date, and a charge keeps the price it was posted at for good.

Drug prices (药品): `concession` sells a stated percentage below the approved retail price, `zero_markup`
(零加成) at the purchase price. The price is computed in integer fen: retail × (10000 − basis points) /
10000, rounded half up to a whole fen (四舍五入), e.g. 10 % below 1 255 fen = 1 129.5 → 1 130 fen.

Codes follow the layout of the national service-price specification (全国医疗服务价格项目规范: 11 general
services, 12 nursing and treatment, 21 imaging, 22 ultrasound, 25 lab, 31 clinical); drugs use hospital
codes, their `national_code` an ATC-based placeholder. The prices are a realistic seed, not any
province's tariff.
"""

import csv
import hashlib
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import text
from sqlmodel import Session

from kit.clock import hospital_date, utcnow
from kit.database import upsert
from services.billing import repository
from services.billing.errors import CatalogueInvalid, CatalogueVersionNotFound, ItemNotFound
from services.billing.models import CatalogueEntry, CatalogueItem, CatalogueVersion
from services.billing.schemas import (
    CatalogueEntryPublic,
    CatalogueItemPublic,
    CatalogueVersionDetail,
    CatalogueVersionPublic,
    Category,
    InsuranceClass,
    Pricing,
    RowError,
)

MAX_UPLOAD_BYTES = 1_048_576  # the gateway's body limit too
MAX_ROWS = 20_000
BASIS_POINTS = 10_000
CONCESSION_CATEGORIES = frozenset({Category.drug, Category.material})
COLUMNS = (
    "hospital_code", "national_code", "name_zh", "name_en", "unit", "category", "insurance_class",
    "pricing", "price_fen", "base_price_fen", "concession_percent", "effective_from", "effective_to",
)  # fmt: skip
_CONTROL = r"^[^\x00-\x1f\x7f]*$"
# Serialises loads on PostgreSQL (SQLite writers are serial already): one version at a time.
_LOAD_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('patientflow.billing.catalogue'))")

RowT = TypeVar("RowT", bound=BaseModel)


class FileRow(BaseModel):
    """Base of a CSV row: empty cells are absent values, no control characters anywhere."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value


class CatalogueRow(FileRow):
    """One price period of one item, as a line of the catalogue file."""

    hospital_code: str = Field(pattern=r"^[A-Z0-9]{4,32}$")
    national_code: str = Field(pattern=r"^[A-Za-z0-9.\-]{1,50}$")
    name_zh: str = Field(min_length=1, max_length=100, pattern=_CONTROL)
    name_en: str = Field(min_length=1, max_length=100, pattern=_CONTROL)
    unit: str = Field(min_length=1, max_length=16, pattern=_CONTROL)
    category: Category
    insurance_class: InsuranceClass
    pricing: Pricing = Pricing.list
    price_fen: int | None = Field(default=None, gt=0, lt=2**31)
    base_price_fen: int | None = Field(default=None, gt=0, lt=2**31)
    concession_percent: Decimal | None = Field(default=None, gt=0, lt=100, decimal_places=2)
    effective_from: date
    effective_to: date | None = None

    @field_validator("price_fen", "base_price_fen", mode="before")
    @classmethod
    def _whole_fen(cls, value: Any) -> Any:
        # "25.00" must not pass as 25 fen: a cell in yuan is a mistake to report, not to round.
        if isinstance(value, str) and value.strip() and not re.fullmatch(r"[0-9]+", value.strip()):
            raise ValueError("a whole number of fen, digits only")
        return value

    @model_validator(mode="after")
    def _priced_as_stated(self) -> "CatalogueRow":
        if self.pricing == Pricing.list:
            if self.price_fen is None or self.base_price_fen or self.concession_percent:
                raise ValueError("a list price needs price_fen and no base_price_fen or concession_percent")
        else:
            if self.category not in CONCESSION_CATEGORIES:
                raise ValueError(f"{self.pricing.value} pricing is for drugs and materials only")
            if self.price_fen is not None or self.base_price_fen is None:
                raise ValueError(f"{self.pricing.value} pricing computes price_fen from base_price_fen")
            if (self.pricing == Pricing.concession) != (self.concession_percent is not None):
                raise ValueError("concession_percent is needed by, and only by, concession pricing")
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    @property
    def concession_bp(self) -> int | None:
        return None if self.concession_percent is None else int(self.concession_percent * 100)

    def unit_price_fen(self) -> int:
        """The price charged, in integer fen (concessions rounded half up to a whole fen)."""
        if self.pricing == Pricing.list:
            assert self.price_fen is not None
            return self.price_fen
        assert self.base_price_fen is not None
        if self.pricing == Pricing.zero_markup:
            return self.base_price_fen
        return concession_price(self.base_price_fen, self.concession_bp or 0)


def concession_price(retail_fen: int, concession_bp: int) -> int:
    """`retail_fen` less `concession_bp` basis points, rounded half up to a whole fen (no floats)."""
    return (retail_fen * (BASIS_POINTS - concession_bp) + BASIS_POINTS // 2) // BASIS_POINTS


# --- reading a file ------------------------------------------------------------------------------------


def read_rows(
    content: bytes, model: type[RowT], columns: Sequence[str]
) -> tuple[list[tuple[int, RowT]], list[RowError]]:
    """Every row of a CSV file as `model`, with its line number, and every problem found (a row's
    problems all reported; the header's on line 1). UTF-8, an Excel BOM allowed."""
    if len(content) > MAX_UPLOAD_BYTES:
        return [], [RowError(line=1, column=None, message=f"larger than {MAX_UPLOAD_BYTES} bytes")]
    try:
        decoded = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], _undecodable_lines(content)
    rows: list[tuple[int, RowT]] = []
    errors: list[RowError] = []
    reader = csv.reader(io.StringIO(decoded, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in columns if name not in header]
        unknown = [name for name in header if name not in columns]
        if missing or unknown or len(set(header)) != len(header):
            message = f"the header must name the columns {', '.join(columns)}"
            return [], [RowError(line=1, column=None, message=message)]
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) + len(errors) >= MAX_ROWS:
                errors.append(RowError(line=line, column=None, message=f"more than {MAX_ROWS} rows"))
                break
            if len(cells) != len(header):
                message = f"{len(cells)} fields, the header has {len(header)}"
                errors.append(RowError(line=line, column=None, message=message))
                continue
            try:
                rows.append((line, model.model_validate(dict(zip(header, cells, strict=True)))))
            except ValidationError as exc:
                errors.extend(_row_errors(line, exc))
    except csv.Error as exc:
        errors.append(RowError(line=reader.line_num, column=None, message=f"not CSV: {exc}"))
    if not rows and not errors:
        errors.append(RowError(line=1, column=None, message="the file has no rows"))
    return rows, errors


def _row_errors(line: int, exc: ValidationError) -> Iterator[RowError]:
    # The message only, never the input: a file may hold anything.
    for error in exc.errors(include_input=False, include_url=False):
        column = str(error["loc"][0]) if error["loc"] else None
        yield RowError(line=line, column=column, message=error["msg"])


def _undecodable_lines(content: bytes) -> list[RowError]:
    errors = []
    for line, raw in enumerate(content.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(RowError(line=line, column=None, message="not UTF-8 text"))
    return errors or [RowError(line=1, column=None, message="not UTF-8 text")]


def overlapping_periods(rows: Sequence[tuple[int, CatalogueRow]]) -> list[RowError]:
    """Two price periods of one code that share a day: the item would have two prices that day."""
    errors = []
    by_code: dict[str, list[tuple[int, CatalogueRow]]] = {}
    for line, row in rows:
        by_code.setdefault(row.hospital_code, []).append((line, row))
    for periods in by_code.values():
        periods.sort(key=lambda period: period[1].effective_from)
        for (earlier_line, earlier), (line, row) in itertools.pairwise(periods):
            if earlier.effective_to is None or earlier.effective_to >= row.effective_from:
                message = f"{row.hospital_code}'s price period overlaps the one on line {earlier_line}"
                errors.append(RowError(line=line, column="effective_from", message=message))
    return errors


def read_catalogue(content: bytes) -> list[tuple[int, CatalogueRow]]:
    """The rows of a catalogue file, or CatalogueInvalid listing every bad line (then nothing loads)."""
    rows, errors = read_rows(content, CatalogueRow, COLUMNS)
    errors += overlapping_periods(rows)
    if errors:
        errors.sort(key=lambda error: error.line)
        raise CatalogueInvalid(
            f"{len(errors)} problem(s) in the catalogue file; nothing was loaded.",
            errors=[error.model_dump() for error in errors],
        )
    return rows


# --- loading ---------------------------------------------------------------------------------------------


def load_version(session: Session, *, content: bytes, source: str, loaded_by: str) -> CatalogueVersionPublic:
    """Load a catalogue file as the new version in force; CatalogueInvalid (nothing loaded) if bad.

    The current items (`catalogue_item`, what charges and booking fees point at) follow it: each listed
    code is active with its price of today, a code no longer listed is inactive (never deleted: bills
    name it)."""
    rows = read_catalogue(content)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOAD_LOCK)
    version = CatalogueVersion(
        source=source[:100],
        loaded_by=loaded_by[:64],
        sha256=hashlib.sha256(content).hexdigest(),
        item_count=len({row.hospital_code for _, row in rows}),
        entry_count=len(rows),
    )
    session.add(version)
    session.flush()
    assert version.id is not None
    entries = [_entry(version.id, line, row) for line, row in rows]
    session.add_all(entries)
    session.flush()
    loaded = version_to_public(version, current=True)
    _follow_version(session, entries)
    return loaded


def load_file(session: Session, path: Path) -> CatalogueVersionPublic | None:
    """At start: load the configured file as a new version unless the last file loaded was this very
    file (so a restart adds no version, and never undoes a later upload). ValueError if it is bad."""
    content = path.read_bytes()
    last = repository.last_catalogue_version_from(session, "file:")
    if last is not None and last.sha256 == hashlib.sha256(content).hexdigest():
        return None
    try:
        return load_version(session, content=content, source=f"file:{path.name}", loaded_by="startup")
    except CatalogueInvalid as exc:
        raise ValueError(f"{path.name}: {exc.detail} {exc.extra['errors']}") from exc


def _entry(version_id: int, line: int, row: CatalogueRow) -> CatalogueEntry:
    return CatalogueEntry(
        version_id=version_id,
        line=line,
        code=row.hospital_code,
        national_code=row.national_code,
        name_zh=row.name_zh,
        name_en=row.name_en,
        unit=row.unit,
        category=row.category.value,
        insurance_class=row.insurance_class.value,
        pricing=row.pricing.value,
        price_fen=row.unit_price_fen(),
        base_price_fen=row.base_price_fen,
        concession_bp=row.concession_bp,
        effective_from=row.effective_from,
        effective_to=row.effective_to,
    )


def _follow_version(session: Session, entries: Sequence[CatalogueEntry]) -> None:
    today = hospital_date(utcnow())
    by_code: dict[str, list[CatalogueEntry]] = {}
    for entry in entries:
        by_code.setdefault(entry.code, []).append(entry)
    for code, periods in by_code.items():
        shown = _period_to_show(periods, today)
        values = {
            "code": code,
            "name_zh": shown.name_zh,
            "name_en": shown.name_en,
            "unit": shown.unit,
            "price_fen": shown.price_fen,
            "category": shown.category,
            "active": True,
            "updated_at": utcnow(),
        }
        upsert(session, CatalogueItem, values, keys=["code"], update=[k for k in values if k != "code"])
    repository.deactivate_items_except(session, list(by_code))
    for item in [obj for obj in session.identity_map.values() if isinstance(obj, CatalogueItem)]:
        session.expire(item)  # the Core statements bypassed the identity map


def _period_to_show(periods: Sequence[CatalogueEntry], today: date) -> CatalogueEntry:
    """Today's period, else the next one to start, else the last one to have ended."""
    for entry in periods:
        if covers(entry, today):
            return entry
    future = [entry for entry in periods if entry.effective_from > today]
    if future:
        return min(future, key=lambda entry: entry.effective_from)
    return max(periods, key=lambda entry: entry.effective_from)


def covers(entry: CatalogueEntry, day: date) -> bool:
    return entry.effective_from <= day and (entry.effective_to is None or day <= entry.effective_to)


# --- pricing a charge ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """An item priced for one service date: the item as charged, and the entry it was priced from."""

    item: CatalogueItem
    entry_id: int | None


def price_on(session: Session, *, code: str, day: date) -> Price | None:
    """The item as the catalogue in force prices it on `day`, or None when no period covers that day.

    The returned item is a detached copy carrying that day's price (never added to the session)."""
    entry = repository.catalogue_entry_on(session, code=code, day=day)
    if entry is None:
        return None
    item = CatalogueItem(
        code=entry.code,
        name_zh=entry.name_zh,
        name_en=entry.name_en,
        unit=entry.unit,
        price_fen=entry.price_fen,
        category=entry.category,
    )
    return Price(item=item, entry_id=entry.id)


# --- reading the catalogue -------------------------------------------------------------------------------


def list_catalogue(
    session: Session, *, day: date | None, category: Category | None, include_inactive: bool
) -> list[CatalogueItemPublic]:
    """The items priced on `day` (default today) in the catalogue in force, by category and code; with
    `include_inactive`, also the items no longer listed, at their last price."""
    day = day or hospital_date(utcnow())
    version_id = repository.current_catalogue_version_id(session)
    entries = repository.catalogue_entries_on(session, day=day, category=category) if version_id else []
    listed = [entry_to_item(entry, version_id) for entry in entries]
    if include_inactive:
        retired = repository.list_items(session, category=category, include_inactive=True)
        listed += [item_to_public(item) for item in retired if not item.active]
    return sorted(listed, key=lambda item: (item.category.value, item.code))


def item_view(session: Session, *, code: str, day: date | None) -> CatalogueItemPublic:
    """One item with its price on `day` (default today); an inactive one, or one unpriced that day,
    as the current items show it (old bills still name it)."""
    item = repository.get_item(session, code)
    if item is None:
        raise ItemNotFound("No such catalogue item.")
    day = day or hospital_date(utcnow())
    entry = repository.catalogue_entry_on(session, code=code, day=day) if item.active else None
    if entry is None:
        return item_to_public(item)
    return entry_to_item(entry, repository.current_catalogue_version_id(session))


def entry_to_item(entry: CatalogueEntry, version_id: int | None) -> CatalogueItemPublic:
    return CatalogueItemPublic(
        **_entry_fields(entry),
        code=entry.code,
        catalogue_version=version_id,
        active=True,
    )


def _entry_fields(entry: CatalogueEntry) -> dict[str, Any]:
    fields = entry.model_dump(exclude={"id", "version_id", "line", "code", "concession_bp"})
    bp = entry.concession_bp
    fields["concession_percent"] = None if bp is None else _percent(bp)
    return fields


def _percent(basis_points: int) -> str:
    whole, rest = divmod(basis_points, 100)
    return str(whole) if rest == 0 else f"{whole}.{rest:02d}".rstrip("0")


def item_to_public(item: CatalogueItem) -> CatalogueItemPublic:
    return CatalogueItemPublic(
        code=item.code,
        national_code=None,
        name_zh=item.name_zh,
        name_en=item.name_en,
        unit=item.unit,
        price_fen=item.price_fen,
        category=Category(item.category),
        insurance_class=None,
        pricing=None,
        base_price_fen=None,
        concession_percent=None,
        effective_from=None,
        effective_to=None,
        catalogue_version=None,
        active=item.active,
    )


def version_to_public(version: CatalogueVersion, *, current: bool) -> CatalogueVersionPublic:
    return CatalogueVersionPublic.model_validate({**version.model_dump(), "current": current})


def list_versions(session: Session, *, limit: int) -> list[CatalogueVersionPublic]:
    current = repository.current_catalogue_version_id(session)
    versions = repository.list_catalogue_versions(session, limit=limit)
    return [version_to_public(version, current=version.id == current) for version in versions]


def version_view(session: Session, *, version_id: int) -> CatalogueVersionDetail:
    """One load of the catalogue, with every entry as it was loaded (which price applied when)."""
    version = session.get(CatalogueVersion, version_id)
    if version is None:
        raise CatalogueVersionNotFound("No such catalogue version.")
    current = repository.current_catalogue_version_id(session)
    entries = [
        CatalogueEntryPublic(**_entry_fields(entry), line=entry.line, code=entry.code)
        for entry in repository.catalogue_entries_of(session, version_id)
    ]
    return CatalogueVersionDetail(
        **version_to_public(version, current=version.id == current).model_dump(), entries=entries
    )
