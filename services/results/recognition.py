"""Mutual recognition of results (检验检查结果互认): a recent result of the same item, from an institution
of this hospital's grade or higher, stands in for a new test.

Every report carries who performed it and their grade (this hospital's own, from the settings, unless
posted as a result received from another hospital: `external_result`). Each orderable test says whether
it takes part and for how many days a result stands (`recognition.json`, loaded at every start). An order
of an item a recognised result answers is refused (409 `recognised-result-exists`, listing them) unless
it names a reason from `DuplicateReason`; the reason is kept on the order (and its report, which shows it
to the patient), raised as `order.duplicate_justified`, and counted by `duplicates_report`.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from fastapi.encoders import jsonable_encoder
from sqlmodel import Session

from kit.auth import Caller
from kit.clock import HOSPITAL_TZ, utcnow
from services.results import repository
from services.results.config import ResultsSettings
from services.results.errors import (
    BadDateRange,
    RecognisedResultExists,
    ResultInFuture,
    ResultSourceRequired,
    UnknownTest,
    UnknownTestCode,
)
from services.results.models import ExternalResult, LabOrder, OrderableTest, Report
from services.results.schemas import (
    FINAL_STATUSES,
    DuplicateCount,
    DuplicateReason,
    DuplicateReportPublic,
    ExternalResultCreate,
    InstitutionLevel,
    OrderCreate,
    RecognisedResultPublic,
    RecognisedSource,
    RegistrationVisit,
)
from services.results.service import _record

WINDOWS_FILE = Path(__file__).parent / "recognition.json"
# The client kinds that bring results from other hospitals: the LIS/PACS, or the HIS.
RESULT_SOURCE_KINDS = frozenset({"lis", "his"})
# A result "from the future" beyond clock skew is a sender's error, not a result to recognise for months.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_REPORT_DAYS = 366


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    name: str
    level: InstitutionLevel


def own_institution(settings: ResultsSettings) -> Institution:
    """This hospital (`RESULTS_INSTITUTION_CODE`, `_NAME`, `_LEVEL`)."""
    return Institution(settings.institution_code, settings.institution_name, settings.institution_level)


def load_windows(session: Session, *, windows_file: Path = WINDOWS_FILE) -> None:
    """Set each orderable test's recognition window from the file (after the tests are seeded); a code
    the catalogue does not know stops start-up rather than silently recognising nothing."""
    windows: dict[str, int | None] = json.loads(windows_file.read_text(encoding="utf-8"))["validity_days"]
    for code, days in windows.items():
        test = repository.get_orderable_test(session, code)
        if test is None:
            raise ValueError(f"{windows_file.name}: no orderable test {code!r}")
        if days is not None and not 1 <= days <= 3650:
            raise ValueError(f"{windows_file.name}: {code}: validity_days must be 1..3650 or null")
        test.recognised, test.validity_days = days is not None, days
        session.add(test)


def stamp_report(session: Session, report: Report, settings: ResultsSettings) -> None:
    """A report first posted here is this hospital's, at its grade, and carries its order's duplicate
    reason (shown to the patient with it)."""
    if report.performing_institution_code is not None:
        return
    own = own_institution(settings)
    report.performing_institution_code, report.performing_institution_name = own.code, own.name
    report.institution_level = own.level.value
    order = repository.get_order(session, report.order_id)
    report.duplicate_reason = order.duplicate_reason if order else None
    session.add(report)


def _test(session: Session, test_code: str, *, in_query: bool = False) -> OrderableTest:
    test = repository.get_orderable_test(session, test_code)
    if test is None:
        error = UnknownTestCode if in_query else UnknownTest
        raise error(f"No orderable test with code {test_code!r}; see GET /tests.")
    return test


def recognised_results(
    session: Session,
    *,
    patient_id: str,
    test_code: str,
    settings: ResultsSettings,
    in_query: bool = False,
) -> list[RecognisedResultPublic]:
    """The patient's final, verified results of the item still within its window, from this hospital or
    an institution of the same grade or higher, newest first; none for an item not taking part."""
    test = _test(session, test_code, in_query=in_query)
    if not test.recognised or test.validity_days is None:
        return []
    window = timedelta(days=test.validity_days)
    now = utcnow()
    own = own_institution(settings)
    found: list[RecognisedResultPublic] = []
    statuses = [s.value for s in FINAL_STATUSES]
    for report in repository.recognisable_reports(
        session, patient_id=patient_id, test_code=test.code, statuses=statuses, since=now - window
    ):
        level = InstitutionLevel(report.institution_level or own.level)
        if level.rank < own.level.rank:
            continue
        found.append(
            RecognisedResultPublic(
                source=RecognisedSource.report,
                id=report.id,
                test_code=report.test_code,
                test_name=report.test_name,
                performed_at=report.reported_at,
                valid_until=report.reported_at + window,
                institution_code=report.performing_institution_code or own.code,
                institution_name=report.performing_institution_name or own.name,
                institution_level=level,
                conclusion=report.conclusion,
                observations=report.observations,  # type: ignore[arg-type]
            )
        )
    for result in repository.recognisable_external_results(
        session, patient_id=patient_id, test_code=test.code, since=now - window
    ):
        level = InstitutionLevel(result.institution_level)
        if level.rank < own.level.rank:
            continue
        found.append(
            RecognisedResultPublic(
                source=RecognisedSource.external,
                id=result.id,
                test_code=result.test_code,
                test_name=test.name_zh,
                performed_at=result.performed_at,
                valid_until=result.performed_at + window,
                institution_code=result.institution_code,
                institution_name=result.institution_name,
                institution_level=level,
                conclusion=result.conclusion,
                observations=result.observations,  # type: ignore[arg-type]
            )
        )
    return sorted(found, key=lambda r: r.performed_at, reverse=True)


def guard_order(
    session: Session, *, visit: RegistrationVisit, data: OrderCreate, settings: ResultsSettings
) -> list[RecognisedResultPublic]:
    """The recognised results the order would repeat; 409 `recognised-result-exists` listing them when
    there are some and the order names no `duplicate_reason`."""
    patient_id = repository.patient_for_visit(session, visit_id=visit.id, registered=visit.patient_id)
    recognised = recognised_results(
        session, patient_id=patient_id, test_code=data.test_code, settings=settings
    )
    if recognised and data.duplicate_reason is None:
        reasons = ", ".join(r.value for r in DuplicateReason)
        raise RecognisedResultExists(
            f"The patient has {len(recognised)} recognised result(s) of this test (互认); order it again "
            f"only with a duplicate_reason: {reasons}.",
            recognised=jsonable_encoder(recognised),
        )
    return recognised


def justify(
    session: Session, order: LabOrder, data: OrderCreate, recognised: list[RecognisedResultPublic]
) -> None:
    """Keep the reason on an order that repeats recognised results, and raise `order.duplicate_justified`.
    A reason given when nothing is recognised is not a duplicate and is not kept."""
    if not recognised or data.duplicate_reason is None:
        return
    order.duplicate_reason = data.duplicate_reason.value
    order.duplicate_note = data.duplicate_note
    session.add(order)
    _record(
        session,
        order,
        "order.duplicate_justified",
        {
            "reason": order.duplicate_reason,
            "note": order.duplicate_note,
            "department": order.department,
            "recognised": [
                {
                    "source": r.source.value,
                    "id": r.id,
                    "institution_code": r.institution_code,
                    "institution_level": r.institution_level.value,
                    "performed_at": r.performed_at.isoformat(),
                }
                for r in recognised
            ],
        },
    )


def require_result_source(caller: Caller) -> None:
    if caller.kind not in RESULT_SOURCE_KINDS:
        raise ResultSourceRequired("Only a LIS/PACS or HIS client posts results from other hospitals.")


def intake_external(
    session: Session, *, data: ExternalResultCreate, caller: Caller
) -> tuple[ExternalResult, bool]:
    """Keep a result received from another hospital; the row and whether this post created it. The same
    (institution, external id) again overwrites the content, never adds a row."""
    require_result_source(caller)
    test = _test(session, data.test_code)
    if data.performed_at > utcnow() + FUTURE_TOLERANCE:
        raise ResultInFuture("performed_at is in the future.")
    existing = repository.get_external_result(
        session, institution_code=data.institution_code, external_id=data.external_id
    )
    values = {
        "id": existing.id if existing else str(uuid.uuid4()),
        "external_id": data.external_id,
        "institution_code": data.institution_code,
        "patient_id": data.patient_id,
        "test_code": test.code,
        "performed_at": data.performed_at,
        "institution_name": data.institution_name,
        "institution_level": data.institution_level.value,
        "conclusion": data.conclusion,
        "observations": [o.model_dump(mode="json") for o in data.observations],
        "verified_by": data.verified_by,
        "source_client": caller.subject[:64],
        "received_at": utcnow(),
    }
    return repository.ensure_external_result(session, values), existing is None


def duplicates_report(session: Session, *, from_date: date, to_date: date) -> DuplicateReportPublic:
    """Orders that repeated a recognised result, placed on these days (hospital time), by reason and
    department."""
    if to_date < from_date or (to_date - from_date).days >= MAX_REPORT_DAYS or to_date == date.max:
        raise BadDateRange(f"to_date must be on or after from_date, at most {MAX_REPORT_DAYS} days.")
    start = datetime.combine(from_date, time.min, HOSPITAL_TZ)
    end = datetime.combine(to_date + timedelta(days=1), time.min, HOSPITAL_TZ)
    rows = repository.count_duplicates(session, ordered_from=start, ordered_before=end)
    counts = [DuplicateCount(reason=DuplicateReason(r), department=d, count=n) for r, d, n in rows]
    by_reason: dict[str, int] = {}
    by_department: dict[str, int] = {}
    for c in counts:
        by_reason[c.reason.value] = by_reason.get(c.reason.value, 0) + c.count
        key = c.department or "unknown"
        by_department[key] = by_department.get(key, 0) + c.count
    return DuplicateReportPublic(
        from_date=from_date,
        to_date=to_date,
        total=sum(c.count for c in counts),
        by_reason=by_reason,
        by_department=by_department,
        counts=counts,
    )
