"""All of results' SQL."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Table, bindparam
from sqlmodel import Session, col, func, or_, select, update

from kit import merges
from kit.database import ReadConnection, upsert
from services.results.models import (
    CriticalValue,
    ExternalResult,
    LabOrder,
    MergedVisit,
    OrderableTest,
    PatientName,
    Report,
    ReportHoldAction,
    ReportPrint,
    ReportRendering,
    ReportRevision,
    ResultAccess,
)


def upsert_orderable_tests(session: Session, tests: Sequence[dict[str, Any]]) -> None:
    for values in tests:
        row = session.get(OrderableTest, values["code"])
        if row is None:
            session.add(OrderableTest.model_validate(values))
        else:
            session.add(row.sqlmodel_update(values))


def list_orderable_tests(session: Session) -> list[OrderableTest]:
    return list(session.exec(select(OrderableTest).order_by(col(OrderableTest.code))).all())


def get_orderable_test(session: Session, code: str) -> OrderableTest | None:
    return session.get(OrderableTest, code)


# An order by id is read by every report, payment and poll: the statements are built once (building one
# and its cache key cost about as much as running it).
ORDER_BY_ID = select(LabOrder).where(LabOrder.id == bindparam("order_id"))
ORDER_BY_ID_FOR_UPDATE = ORDER_BY_ID.with_for_update()
_orders: Table = LabOrder.__table__  # type: ignore[attr-defined]
ORDER_ROW_BY_ID = _orders.select().where(_orders.c.id == bindparam("order_id"))


def get_order(session: Session, order_id: str, *, for_update: bool = False) -> LabOrder | None:
    """One order; `for_update` row-locks it on PostgreSQL (SQLite's single writer already serialises)."""
    query = ORDER_BY_ID_FOR_UPDATE if for_update else ORDER_BY_ID
    return session.exec(query, params={"order_id": order_id}).first()


def order_row(reader: ReadConnection, order_id: str) -> RowMapping | None:
    """One order's columns, for a read below the ORM (`GET /orders/{id}`, polled until it is released)."""
    return reader.execute(ORDER_ROW_BY_ID, {"order_id": order_id}).mappings().first()


def list_orders(session: Session, *, status: str | None, limit: int) -> list[LabOrder]:
    query = select(LabOrder)
    if status:
        query = query.where(LabOrder.status == status)
    query = query.order_by(col(LabOrder.ordered_at), col(LabOrder.id)).limit(limit)
    return list(session.exec(query).all())


def list_visit_orders(session: Session, visit_id: str) -> list[LabOrder]:
    query = select(LabOrder).where(LabOrder.visit_id == visit_id)
    return list(session.exec(query.order_by(col(LabOrder.ordered_at), col(LabOrder.id))).all())


def patient_of_visit(session: Session, visit_id: str) -> str | None:
    """The patient a visit's orders belong to, if results has any (for the audit record)."""
    query = select(LabOrder.patient_id).where(LabOrder.visit_id == visit_id).limit(1)
    return session.exec(query).first()


def list_visit_reports(session: Session, visit_id: str, *, limit: int) -> list[Report]:
    query = select(Report).where(Report.visit_id == visit_id)
    return list(session.exec(query.order_by(col(Report.reported_at).desc()).limit(limit)).all())


def list_patient_reports(session: Session, patient_id: str, *, limit: int) -> list[Report]:
    query = select(Report).where(Report.patient_id == patient_id)
    return list(session.exec(query.order_by(col(Report.reported_at).desc()).limit(limit)).all())


def get_report(session: Session, report_id: str, *, for_update: bool = False) -> Report | None:
    """A report, whoever's it is (the service decides who may see it, and audits a refusal as such)."""
    query = select(Report).where(Report.id == report_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def current_report_of_order(session: Session, order_id: str) -> Report | None:
    """The order's report (the newest, where rows from before one-report-per-order left two)."""
    query = select(Report).where(Report.order_id == order_id)
    return session.exec(query.order_by(col(Report.reported_at).desc(), col(Report.id)).limit(1)).first()


def orders_by_id(session: Session, order_ids: Sequence[str]) -> dict[str, LabOrder]:
    if not order_ids:
        return {}
    rows = session.exec(select(LabOrder).where(col(LabOrder.id).in_(list(set(order_ids))))).all()
    return {order.id: order for order in rows}


def ensure_external_report(session: Session, values: dict[str, Any]) -> Report:
    """The report a LIS names `(source_client, external_id)`, inserted as `values` (version 0) unless it
    exists, then row-locked. One `INSERT … ON CONFLICT` statement: of two posts racing to create it,
    the second waits for the first to commit and then finds its row, never a duplicate or a 500."""
    keys = ("source_client", "external_id")
    upsert(session, Report, values, keys=keys, update=["external_id"])
    query = select(Report).where(
        Report.source_client == values["source_client"], Report.external_id == values["external_id"]
    )
    # The row may be another transaction's, committed while we waited on it: read it afresh.
    return session.exec(query.with_for_update().execution_options(populate_existing=True)).one()


def add_revision(session: Session, revision: ReportRevision) -> None:
    session.add(revision)


def add_hold_action(session: Session, action: ReportHoldAction) -> None:
    session.add(action)


def readers_of_report(session: Session, report: Report) -> list[tuple[str, str | None]]:
    """Who has been shown the report (client, and the patient it acted for), from the access audit:
    each distinct pair once, in the order they first read it."""
    query = select(ResultAccess).where(
        ResultAccess.patient_id == report.patient_id, ResultAccess.outcome == "found"
    )
    readers: dict[tuple[str, str | None], None] = {}
    for row in session.exec(query.order_by(col(ResultAccess.id))).all():
        if row.report_id == report.id or report.id in (row.report_ids or []):
            readers.setdefault((row.client, row.acting_for), None)
    return list(readers)


# Oldest first; one report's values (raised together) by observation code, so pages are stable.
CRITICAL_ORDER = (
    col(CriticalValue.raised_at),
    col(CriticalValue.report_id),
    col(CriticalValue.observation_code),
)


def critical_values_of_report(session: Session, report_id: str) -> list[CriticalValue]:
    query = select(CriticalValue).where(CriticalValue.report_id == report_id)
    return list(session.exec(query.order_by(*CRITICAL_ORDER)).all())


def get_critical_value(
    session: Session, critical_id: str, *, for_update: bool = False
) -> CriticalValue | None:
    query = select(CriticalValue).where(CriticalValue.id == critical_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def list_critical_values(
    session: Session, *, acknowledged: bool | None, department: str | None, limit: int
) -> list[CriticalValue]:
    """Critical values oldest first; `acknowledged=False` is the pending list."""
    query = select(CriticalValue)
    if acknowledged is not None:
        column = col(CriticalValue.acknowledged_at)
        query = query.where(column.is_not(None) if acknowledged else column.is_(None))
    if department is not None:
        query = query.where(CriticalValue.department == department)
    query = query.order_by(*CRITICAL_ORDER).limit(limit)
    return list(session.exec(query).all())


def escalation_candidates(session: Session, *, raised_before: datetime) -> list[CriticalValue]:
    """Unacknowledged, not yet escalated critical values raised before the cut-off; row-locked, and
    rows another loop holds are skipped (it escalates them), oldest first."""
    query = (
        select(CriticalValue)
        .where(
            col(CriticalValue.acknowledged_at).is_(None),
            col(CriticalValue.escalated_at).is_(None),
            col(CriticalValue.raised_at) <= raised_before,
        )
        .order_by(*CRITICAL_ORDER)
        .limit(500)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(query).all())


def patient_for_visit(session: Session, *, visit_id: str, registered: str) -> str:
    """The patient a new order of the visit names (kit.merges); first in the unit of work."""
    return merges.patient_for_visit(session, MergedVisit, visit_id=visit_id, registered=registered)


def repoint_patient(session: Session, *, visit_ids: Sequence[str], source_id: str, target_id: str) -> None:
    """Move orders and reports of merged visits (and any left on the merged record) to the survivor,
    and note the visits so later writes follow (kit.merges)."""
    merges.note_merged_visits(session, MergedVisit, visit_ids=visit_ids, target_id=target_id)
    for table in (LabOrder, Report, ReportPrint):
        belongs = or_(col(table.visit_id).in_(list(visit_ids)), col(table.patient_id) == source_id)
        session.exec(update(table).where(belongs).values(patient_id=target_id))
    # Results received from other hospitals name no visit: they follow the merged record (互认).
    moved = update(ExternalResult).where(col(ExternalResult.patient_id) == source_id)
    session.exec(moved.values(patient_id=target_id))


def keep_patient_name(session: Session, values: dict[str, Any]) -> None:
    """Insert or overwrite one patient's name, sex and birth date (`PatientName`)."""
    columns = ("identified", "name", "sex", "birth_date", "updated_at")
    upsert(session, PatientName, values, keys=["patient_id"], update=columns)


def patient_names(session: Session, patient_ids: Sequence[str]) -> dict[str, PatientName]:
    """The known names of these patients, by patient id (a patient not learned yet is missing)."""
    if not patient_ids:
        return {}
    query = select(PatientName).where(col(PatientName.patient_id).in_(list(set(patient_ids))))
    return {row.patient_id: row for row in session.exec(query).all()}


def list_result_access(session: Session, *, patient_id: str | None, limit: int) -> list[ResultAccess]:
    query = select(ResultAccess)
    if patient_id is not None:
        query = query.where(ResultAccess.patient_id == patient_id)
    return list(session.exec(query.order_by(col(ResultAccess.id).desc()).limit(limit)).all())


def lock_reports(session: Session, report_ids: Sequence[str]) -> list[Report]:
    """The reports, row-locked in id order on PostgreSQL (no two prints deadlock; SQLite's single
    writer already serialises), so each copy number is counted once."""
    if not report_ids:
        return []
    query = select(Report).where(col(Report.id).in_(list(report_ids))).order_by(col(Report.id))
    return list(session.exec(query.with_for_update()).all())


def printed_copies(session: Session, report_ids: Sequence[str]) -> dict[tuple[str, int], int]:
    """(report, version) -> copies printed so far, for the given reports."""
    if not report_ids:
        return {}
    query = (
        select(ReportPrint.report_id, ReportPrint.report_version, func.max(ReportPrint.copy_number))
        .where(col(ReportPrint.report_id).in_(list(report_ids)))
        .group_by(col(ReportPrint.report_id), col(ReportPrint.report_version))
    )
    return {(report_id, version): copies for report_id, version, copies in session.exec(query).all()}


def get_print(session: Session, print_id: str) -> ReportPrint | None:
    return session.get(ReportPrint, print_id)


# --- stored renderings (renderings.py) ---


def get_rendering(session: Session, report_id: str, version: int) -> ReportRendering | None:
    return session.get(ReportRendering, (report_id, version))


def store_rendering(session: Session, rendering: ReportRendering) -> None:
    """Keep a version's paper; two renders of one version racing store one row (the last wins, and
    both rendered the same row)."""
    values = rendering.model_dump()
    upsert(
        session,
        ReportRendering,
        values,
        keys=("report_id", "report_version"),
        update=("source_digest", "pdf", "rendered_at"),
    )


def reports_to_prerender(
    session: Session, *, statuses: Sequence[str], since: datetime, limit: int
) -> list[Report]:
    """Reports of a final status, verified and not withheld, reported since `since`, whose current
    version has no stored paper yet; newest first (the patient most likely at a kiosk soon)."""
    rendered = select(ReportRendering.report_id).where(
        col(ReportRendering.report_id) == col(Report.id),
        col(ReportRendering.report_version) == col(Report.version),
    )
    query = (
        select(Report)
        .where(
            col(Report.reported_at) >= since,
            col(Report.status).in_(list(statuses)),
            col(Report.verified_by).is_not(None),
            col(Report.withheld).is_(False),
            ~rendered.exists(),
        )
        .order_by(col(Report.reported_at).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())


# --- mutual recognition (recognition.py) ---


def recognisable_reports(
    session: Session, *, patient_id: str, test_code: str, statuses: Sequence[str], since: datetime
) -> list[Report]:
    """The patient's verified reports of the item in `statuses` reported since `since`, newest first."""
    query = select(Report).where(
        Report.patient_id == patient_id,
        Report.test_code == test_code,
        col(Report.status).in_(list(statuses)),
        col(Report.verified_at).is_not(None),
        col(Report.reported_at) >= since,
    )
    return list(session.exec(query.order_by(col(Report.reported_at).desc(), col(Report.id))).all())


def recognisable_external_results(
    session: Session, *, patient_id: str, test_code: str, since: datetime
) -> list[ExternalResult]:
    query = select(ExternalResult).where(
        ExternalResult.patient_id == patient_id,
        ExternalResult.test_code == test_code,
        col(ExternalResult.performed_at) >= since,
    )
    order = (col(ExternalResult.performed_at).desc(), col(ExternalResult.id))
    return list(session.exec(query.order_by(*order)).all())


def ensure_external_result(session: Session, values: dict[str, Any]) -> ExternalResult:
    """The result `(institution_code, external_id)` names, inserted as `values` or overwritten with them,
    in one `INSERT … ON CONFLICT` (two posts racing make one row), then read afresh."""
    keys = ("institution_code", "external_id")
    content = [k for k in values if k not in (*keys, "id", "received_at")]
    upsert(session, ExternalResult, values, keys=keys, update=content)
    query = select(ExternalResult).where(
        ExternalResult.institution_code == values["institution_code"],
        ExternalResult.external_id == values["external_id"],
    )
    return session.exec(query.execution_options(populate_existing=True)).one()


def get_external_result(
    session: Session, *, institution_code: str, external_id: str
) -> ExternalResult | None:
    query = select(ExternalResult).where(
        ExternalResult.institution_code == institution_code, ExternalResult.external_id == external_id
    )
    return session.exec(query).first()


def count_duplicates(
    session: Session, *, ordered_from: datetime, ordered_before: datetime
) -> list[tuple[str, str | None, int]]:
    """(reason, department, orders) of the orders placed in the range with a duplicate reason."""
    query = (
        select(LabOrder.duplicate_reason, LabOrder.department, func.count())
        .where(
            col(LabOrder.duplicate_reason).is_not(None),
            col(LabOrder.ordered_at) >= ordered_from,
            col(LabOrder.ordered_at) < ordered_before,
        )
        .group_by(col(LabOrder.duplicate_reason), col(LabOrder.department))
        .order_by(col(LabOrder.duplicate_reason), col(LabOrder.department))
    )
    return [(str(reason), department, int(n)) for reason, department, n in session.exec(query).all()]


def reports_by_id(session: Session, report_ids: Sequence[str]) -> list[Report]:
    if not report_ids:
        return []
    return list(session.exec(select(Report).where(col(Report.id).in_(list(report_ids)))).all())


# Turnaround (turnaround.py): the lab's overdue orders, and the orders a TAT period covers.
def overdue_orders(
    session: Session,
    *,
    now: datetime,
    priority: str | None = None,
    test_code: str | None = None,
    unnotified_only: bool = False,
    limit: int = 500,
) -> list[LabOrder]:
    """Orders with the lab (`released`: paid or not needing it, and with no final report, a cancelled
    one included) due before `now`; longest overdue first. `unnotified_only`: those `order.overdue` was
    not sent for, row-locked with rows another loop holds skipped (it sends theirs)."""
    query = select(LabOrder).where(
        col(LabOrder.due_at).is_not(None),
        col(LabOrder.due_at) < now,
        LabOrder.status == "released",
    )
    if priority is not None:
        query = query.where(LabOrder.priority == priority)
    if test_code is not None:
        query = query.where(LabOrder.test_code == test_code)
    if unnotified_only:
        query = query.where(col(LabOrder.overdue_notified_at).is_(None))
    query = query.order_by(col(LabOrder.due_at), col(LabOrder.id)).limit(limit)
    if unnotified_only:
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query).all())


def orders_placed_between(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    priority: str | None = None,
    test_code: str | None = None,
) -> list[LabOrder]:
    """Orders with a target placed in [start, end)."""
    query = select(LabOrder).where(
        col(LabOrder.ordered_at) >= start,
        col(LabOrder.ordered_at) < end,
        col(LabOrder.target_minutes).is_not(None),
    )
    if priority is not None:
        query = query.where(LabOrder.priority == priority)
    if test_code is not None:
        query = query.where(LabOrder.test_code == test_code)
    return list(session.exec(query).all())
