"""The price catalogue (价格公示): its file (`catalogue.csv`), read and checked in full before any row is
loaded, and the rules that load and list it.

Codes follow the layout of the national service-price specification (全国医疗服务价格项目规范: 11 general
services, 12 nursing and treatment, 21 imaging, 22 ultrasound, 25 lab, 31 clinical); drugs use hospital
codes. The prices are a realistic seed, not any province's tariff.
"""

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlmodel import Session

from kit.clock import utcnow
from services.billing import repository
from services.billing.errors import ItemNotFound
from services.billing.models import CatalogueItem
from services.billing.schemas import CatalogueItemPublic, CatalogueRow, Category


def read_catalogue(path: Path) -> list[CatalogueRow]:
    """Every row of the file, or ValueError naming the first bad line (a bad price list must not load)."""
    rows: list[CatalogueRow] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            try:
                rows.append(CatalogueRow.model_validate(record))
            except ValidationError as exc:
                raise ValueError(f"{path.name} line {line}: {exc}") from exc
    duplicates = sorted(code for code, count in Counter(row.code for row in rows).items() if count > 1)
    if duplicates:
        raise ValueError(f"{path.name}: duplicate codes {duplicates}")
    return rows


def load_catalogue(session: Session, *, rows: Sequence[CatalogueRow]) -> None:
    """Upsert the price list; items no longer in it become inactive (never deleted: bills name them)."""
    for row in rows:
        values = row.model_dump(mode="json")
        item = repository.get_item(session, row.code)
        if item is None:
            session.add(CatalogueItem(**values))
        elif not item.active or any(getattr(item, name) != value for name, value in values.items()):
            item.sqlmodel_update({**values, "active": True, "updated_at": utcnow()})
            session.add(item)
    repository.deactivate_items_except(session, [row.code for row in rows])


def list_catalogue(
    session: Session, *, category: Category | None, include_inactive: bool
) -> list[CatalogueItemPublic]:
    items = repository.list_items(session, category=category, include_inactive=include_inactive)
    return [item_to_public(item) for item in items]


def get_item(session: Session, *, code: str) -> CatalogueItem:
    item = repository.get_item(session, code)
    if item is None:
        raise ItemNotFound("No such catalogue item.")
    return item


def item_to_public(item: CatalogueItem) -> CatalogueItemPublic:
    return CatalogueItemPublic.model_validate(item, from_attributes=True)
