"""All of results' SQL."""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, func, or_, select, update

from kit import merges
from services.results.models import (
    LabOrder,
    MergedVisit,
    OrderableTest,
    Report,
    ReportPrint,
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


def get_order(session: Session, order_id: str, *, for_update: bool = False) -> LabOrder | None:
    """One order; `for_update` row-locks it on PostgreSQL (SQLite's single writer already serialises)."""
    query = select(LabOrder).where(LabOrder.id == order_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


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


def get_report(session: Session, report_id: str) -> Report | None:
    """A report, whoever's it is (the service decides who may see it, and audits a refusal as such)."""
    return session.get(Report, report_id)


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
