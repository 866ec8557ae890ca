"""Charging rules as data (收费规则): what the catalogue's items may not be charged together or beyond.

Against split charging (分解收费) and duplicate charging (重复收费), one rule a row of a CSV file
(`charge_rules.csv` at start, or an upload to `POST /charge-rule-versions`), versioned like the catalogue:

- `includes` A B: A's price includes B (项目内涵), never both on one visit's day. B is refused with
  `included-in-charged-item`, A (B charged first) with `includes-charged-item`.
- `excludes` A B: mutually exclusive on one visit's day: `mutually-exclusive`.
- `max_per_day` A n: at most n of A per visit and service date (one bed-day a day):
  `max-per-day-exceeded`.
- `max_per_stay` A n: at most n of A per visit (stay): `max-per-stay-exceeded`.
- `visit_kinds` A kinds: A only for visits of those kinds: `visit-kind-not-allowed`.

Quantities are net: a reversed charge and its reversal line count for nothing, so a corrected bed-day can
be posted again. `enforce` runs inside the charge's unit of work after the visit's account row is locked
(every charge path locks it first: `accounts.account_for`, `open_account`), so two charges of one visit
are checked one after the other, on PostgreSQL as on SQLite: of two racing bed-days for one day, exactly
one is posted.
"""

import hashlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from sqlmodel import Session

from services.billing import repository
from services.billing.catalogue import FileRow, read_rows
from services.billing.errors import ChargeRefused, ChargeRulesInvalid, ChargeRuleVersionNotFound
from services.billing.models import ChargeRule, ChargeRuleVersion, VisitAccount
from services.billing.schemas import (
    ChargeRulePublic,
    ChargeRuleVersionDetail,
    ChargeRuleVersionPublic,
    RowError,
    RuleKind,
)

COLUMNS = ("rule", "item_code", "other_item_code", "max_quantity", "visit_kinds", "note")
VISIT_KINDS = frozenset({"outpatient", "emergency", "inpatient"})
PAIRED = frozenset({RuleKind.includes, RuleKind.excludes})
LIMITS = frozenset({RuleKind.max_per_day, RuleKind.max_per_stay})
_CODE = r"^[A-Z0-9]{4,32}$"


class ChargeRuleRow(FileRow):
    """One line of a charging-rules file."""

    rule: RuleKind
    item_code: str = Field(pattern=_CODE)
    other_item_code: str | None = Field(default=None, pattern=_CODE)
    max_quantity: int | None = Field(default=None, ge=1, le=999)
    visit_kinds: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> "ChargeRuleRow":
        paired, limit, kinds = self.rule in PAIRED, self.rule in LIMITS, self.rule == RuleKind.visit_kinds
        if paired != (self.other_item_code is not None):
            raise ValueError("other_item_code is needed by, and only by, includes and excludes")
        if self.other_item_code == self.item_code:
            raise ValueError("an item cannot be paired with itself")
        if limit != (self.max_quantity is not None):
            raise ValueError("max_quantity is needed by, and only by, max_per_day and max_per_stay")
        if kinds != (self.visit_kinds is not None):
            raise ValueError("visit_kinds is needed by, and only by, the visit_kinds rule")
        if self.visit_kinds is not None:
            named = self.visit_kinds.split()
            if not named or not set(named) <= VISIT_KINDS:
                raise ValueError(f"visit_kinds: space-separated, of {', '.join(sorted(VISIT_KINDS))}")
            self.visit_kinds = " ".join(sorted(set(named)))
        return self


def read_rules(session: Session, content: bytes) -> list[tuple[int, ChargeRuleRow]]:
    """The rows of a rules file, or ChargeRulesInvalid listing every bad line: a malformed row, an item
    the catalogue in force does not list, a rule given twice."""
    rows, errors = read_rows(content, ChargeRuleRow, COLUMNS)
    seen: dict[tuple[str, str, str | None], int] = {}
    for line, row in rows:
        for code in filter(None, (row.item_code, row.other_item_code)):
            item = repository.get_item(session, code)
            if item is None or not item.active:
                message = f"{code} is not an item of the catalogue in force"
                errors.append(RowError(line=line, column=None, message=message))
        key = (row.rule.value, row.item_code, row.other_item_code)
        if key in seen:
            message = f"the same rule as on line {seen[key]}"
            errors.append(RowError(line=line, column="rule", message=message))
        seen.setdefault(key, line)
    if errors:
        errors.sort(key=lambda error: error.line)
        raise ChargeRulesInvalid(
            f"{len(errors)} problem(s) in the charging rules file; nothing was loaded.",
            errors=[error.model_dump() for error in errors],
        )
    return rows


def load_version(session: Session, *, content: bytes, source: str, loaded_by: str) -> ChargeRuleVersionDetail:
    """Load a rules file as the rules in force (a new version); ChargeRulesInvalid if any row is bad."""
    rows = read_rules(session, content)
    version = ChargeRuleVersion(
        source=source[:100],
        loaded_by=loaded_by[:64],
        sha256=hashlib.sha256(content).hexdigest(),
        rule_count=len(rows),
    )
    session.add(version)
    session.flush()
    assert version.id is not None
    rules = [ChargeRule(version_id=version.id, line=line, **_values(row)) for line, row in rows]
    session.add_all(rules)
    session.flush()
    session.info.pop(repository.RULES_MEMO, None)  # the rules in force changed
    return _detail(version, rules, current=True)


def _values(row: ChargeRuleRow) -> dict[str, Any]:
    return {**row.model_dump(), "rule": row.rule.value}


def load_file(session: Session, path: Path) -> ChargeRuleVersionDetail | None:
    """At start, after the catalogue: load the configured rules file unless it is the last file loaded."""
    content = path.read_bytes()
    last = repository.last_rule_version_from(session, "file:")
    if last is not None and last.sha256 == hashlib.sha256(content).hexdigest():
        return None
    try:
        return load_version(session, content=content, source=f"file:{path.name}", loaded_by="startup")
    except ChargeRulesInvalid as exc:
        raise ValueError(f"{path.name}: {exc.detail} {exc.extra['errors']}") from exc


# --- enforcing --------------------------------------------------------------------------------------------


def enforce(
    session: Session, *, account: VisitAccount, item_code: str, quantity: int, service_date: date
) -> None:
    """ChargeRefused if a rule in force forbids charging `quantity` of the item to the visit on that
    service date. Call it with the visit's account row locked (see the module docstring)."""
    naming = repository.rules_naming(session, item_code)
    if not naming:
        return
    codes = {item_code} | {code for rule in naming for code in (rule.item_code, rule.other_item_code) if code}
    standing: dict[date | None, dict[str, int]] = {}  # the visit's quantities, one query per span

    def charged(code: str, on: date | None) -> int:
        if on not in standing:
            standing[on] = repository.net_quantities(
                session, visit_id=account.visit_id, item_codes=sorted(codes), service_date=on
            )
        return standing[on][code]

    for rule in naming:
        reason, detail, extra = _broken(
            rule, account=account, item_code=item_code, quantity=quantity, day=service_date, charged=charged
        )
        if reason is not None:
            raise ChargeRefused(
                detail,
                reason=reason,
                visit_id=account.visit_id,
                item_code=item_code,
                quantity=quantity,
                service_date=service_date,
                rule_id=rule.id,
                **extra,
            )


def _broken(
    rule: ChargeRule,
    *,
    account: VisitAccount,
    item_code: str,
    quantity: int,
    day: date,
    charged: Callable[[str, date | None], int],
) -> tuple[str | None, str, dict[str, Any]]:
    """The reason, an explanation and its details when `rule` forbids the charge, else (None, "", {}).
    `charged(code, on)`: how much of an item stands charged to the visit on a day (None: the stay)."""
    kind = RuleKind(rule.rule)
    other = rule.other_item_code if rule.item_code == item_code else rule.item_code
    if kind == RuleKind.visit_kinds and rule.item_code == item_code:
        allowed = (rule.visit_kinds or "").split()
        if account.kind not in allowed:
            detail = f"{item_code} is charged only to {' or '.join(allowed)} visits, not {account.kind}."
            return "visit-kind-not-allowed", detail, {"visit_kind": account.kind, "allowed_kinds": allowed}
    elif kind == RuleKind.includes and other is not None and charged(other, day) > 0:
        if rule.other_item_code == item_code:
            detail = f"{item_code} is included in {other}, already charged that day (分解收费)."
            return "included-in-charged-item", detail, {"other_item_code": other}
        detail = f"{item_code} includes {other}, already charged that day: reverse {other} first."
        return "includes-charged-item", detail, {"other_item_code": other}
    elif kind == RuleKind.excludes and other is not None and charged(other, day) > 0:
        detail = f"{item_code} and {other} are mutually exclusive; {other} is charged that day."
        return "mutually-exclusive", detail, {"other_item_code": other}
    elif kind in LIMITS and rule.item_code == item_code and rule.max_quantity is not None:
        per_day = kind == RuleKind.max_per_day
        already = charged(item_code, day if per_day else None)
        if already + quantity > rule.max_quantity:
            span = "a day" if per_day else "a stay"
            detail = (
                f"At most {rule.max_quantity} of {item_code} {span}; {already} already charged (重复收费)."
            )
            reason = "max-per-day-exceeded" if per_day else "max-per-stay-exceeded"
            return reason, detail, {"max_quantity": rule.max_quantity, "already_charged": already}
    return None, "", {}


# --- reading ---------------------------------------------------------------------------------------------


def rule_to_public(rule: ChargeRule) -> ChargeRulePublic:
    return ChargeRulePublic.model_validate(
        {**rule.model_dump(), "visit_kinds": rule.visit_kinds.split() if rule.visit_kinds else None}
    )


def _detail(version: ChargeRuleVersion, rules: list[ChargeRule], *, current: bool) -> ChargeRuleVersionDetail:
    return ChargeRuleVersionDetail(
        **version.model_dump(), current=current, rules=[rule_to_public(rule) for rule in rules]
    )


def version_view(session: Session, *, version_id: int | None) -> ChargeRuleVersionDetail:
    """One load of the rules with every rule (None: the rules in force)."""
    current = repository.current_rule_version_id(session)
    version = session.get(ChargeRuleVersion, version_id or current) if (version_id or current) else None
    if version is None or version.id is None:
        raise ChargeRuleVersionNotFound("No such charging rules version.")
    return _detail(version, repository.rules_of(session, version.id), current=version.id == current)


def list_versions(session: Session, *, limit: int) -> list[ChargeRuleVersionPublic]:
    current = repository.current_rule_version_id(session)
    return [
        ChargeRuleVersionPublic(**version.model_dump(), current=version.id == current)
        for version in repository.list_rule_versions(session, limit=limit)
    ]
