"""The insurance split (医保分担) as data: per scheme and insurance class (甲/乙/丙), the covered share in
basis points, a deductible (起付线) and a cap (封顶线) per visit, read from a CSV
(`insurance_split.csv`, setting `BILLING_INSURANCE_SPLIT_PATH`).

For one visit's lines, per class: `eligible = max(0, class total − deductible)`, the insurer pays
`eligible × covered_bp / 10000` rounded half up to the fen, at most the cap. The patient pays the exact
remainder of the total, so the two shares always sum to the total. A scheme or class the table does
not list is covered at 0 (the patient pays it all); so is a line priced without a catalogue entry."""

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SELF_PAY = "self_pay"
UNCOVERED_CLASS = "丙"
CLASSES = ("甲", "乙", "丙")
MAX_FEN = 10**12
COLUMNS = ["scheme", "insurance_class", "covered_bp", "deductible_fen", "cap_fen"]


class InsuranceSplitInvalid(ValueError):
    """The split table has bad rows; every one is named with its line."""


@dataclass(frozen=True, slots=True)
class ClassRule:
    covered_bp: int
    deductible_fen: int
    cap_fen: int


@dataclass(frozen=True, slots=True)
class Split:
    total_fen: int
    insurer_fen: int

    @property
    def patient_fen(self) -> int:
        return self.total_fen - self.insurer_fen


SplitTable = dict[tuple[str, str], ClassRule]


def _fen(text: str, *, upper: int) -> int:
    value = int(text)
    if not 0 <= value <= upper:
        raise ValueError(f"{value} is not in 0..{upper}")
    return value


def parse_split_table(text: str) -> SplitTable:
    """The table from CSV text; InsuranceSplitInvalid naming every bad line."""
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames != COLUMNS:
        raise InsuranceSplitInvalid(f"line 1: the columns must be {','.join(COLUMNS)}")
    table: SplitTable = {}
    errors: list[str] = []
    for line, row in enumerate(reader, start=2):
        try:
            key = (row["scheme"].strip(), row["insurance_class"].strip())
            if not key[0] or key[1] not in CLASSES:
                raise ValueError(f"need a scheme and a class of {'/'.join(CLASSES)}")
            if key in table:
                raise ValueError(f"{key[0]}/{key[1]} is listed twice")
            table[key] = ClassRule(
                covered_bp=_fen(row["covered_bp"], upper=10_000),
                deductible_fen=_fen(row["deductible_fen"], upper=MAX_FEN),
                cap_fen=_fen(row["cap_fen"], upper=MAX_FEN),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            errors.append(f"line {line}: {exc}")
    if errors:
        raise InsuranceSplitInvalid("; ".join(errors))
    return table


@lru_cache
def load_split_table(path: Path) -> SplitTable:
    return parse_split_table(path.read_text(encoding="utf-8"))


def half_up(numerator: int, denominator: int) -> int:
    """`numerator / denominator` rounded half up, in integers (both non-negative)."""
    return (2 * numerator + denominator) // (2 * denominator)


def split(table: SplitTable, *, scheme: str, lines: Iterable[tuple[str, int]]) -> Split:
    """The insurer's and the patient's shares of `lines` (insurance class, amount in fen; reversal
    lines negative). A class whose net total is negative or zero is covered at 0."""
    totals: dict[str, int] = {}
    for insurance_class, amount_fen in lines:
        totals[insurance_class] = totals.get(insurance_class, 0) + amount_fen
    by_class: dict[str, int] = {}
    for insurance_class, class_total in totals.items():
        rule = table.get((scheme, insurance_class))
        if rule is None or class_total <= 0:
            continue
        eligible = max(0, class_total - rule.deductible_fen)
        by_class[insurance_class] = min(rule.cap_fen, half_up(eligible * rule.covered_bp, 10_000))
    total = sum(totals.values())
    return Split(total_fen=total, insurer_fen=max(0, min(total, sum(by_class.values()))))
