"""The price catalogue file (`catalogue.csv`), read and checked in full before any row is loaded.

Codes follow the layout of the national service-price specification (全国医疗服务价格项目规范: 11 general
services, 12 nursing and treatment, 21 imaging, 22 ultrasound, 25 lab, 31 clinical); drugs use hospital
codes. The prices are a realistic seed, not any province's tariff.
"""

import csv
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from services.billing.schemas import CatalogueRow


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
