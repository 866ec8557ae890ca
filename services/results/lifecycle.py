"""A report's lifecycle: registered → preliminary → final → amended / corrected, or cancelled, with who
verified it and whether a doctor withheld it. One function (`_apply`) changes a report's content, for
the lab's posts, amendments, cancellations and a LIS/PACS's idempotent intake alike.

Each change keeps the content it replaced (`report_revision`), and a change to a report someone has
already read (final, amended or corrected → amended, corrected or cancelled) sends each of them, as the
result-access audit knows them, one `report.amended_notice`.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session

from kit.auth import Caller
from kit.clock import utcnow
from services.results import critical, repository, turnaround
from services.results.errors import (
    ExternalReportConflict,
    HoldUnchanged,
    LisClientRequired,
    ReportAlreadyFinal,
    ReportAlreadyVerified,
    ReportCancelled,
    ReportNotFinal,
    ReportNotFound,
)
from services.results.models import LabOrder, Report, ReportHoldAction, ReportRevision
from services.results.schemas import (
    AMENDED_STATUSES,
    FINAL_STATUSES,
    HoldAction,
    LisReport,
    Observation,
    OrderStatus,
    ReportAmendment,
    ReportCancellation,
    ReportContent,
    ReportCreate,
    ReportStatus,
    ReportVerification,
)
from services.results.service import (
    SUBJECT_MAX_LENGTH,
    _record,
    ensure_lab_may_work,
    get_order,
    note_releasable,
)

LIS_KIND = "lis"
# The fields a change may alter, compared to tell a repeat (nothing to do) from a change.
CONTENT_FIELDS = ("status", "conclusion", "observations", "critical", "critical_note", "verified_by")


def _content(data: ReportContent) -> dict[str, Any]:
    return {
        "status": data.status.value,
        "conclusion": data.conclusion,
        "observations": [o.model_dump(mode="json") for o in data.observations],
        "critical": data.is_critical,
        "critical_note": data.critical_note,
        "verified_by": data.verified_by,
    }


def _check_transition(current: ReportStatus | None, new: ReportStatus) -> None:
    """Forwards only: nothing but an amendment or a cancellation after final, nothing after cancelled."""
    if current is ReportStatus.cancelled:
        raise ReportCancelled("This report was cancelled; it cannot change any more.")
    if current in FINAL_STATUSES and new not in AMENDED_STATUSES | {ReportStatus.cancelled}:
        raise ReportAlreadyFinal("This order already has a final report; amend or cancel it instead.")
    if current not in FINAL_STATUSES and new in AMENDED_STATUSES:
        raise ReportNotFinal("Only a final report can be amended or corrected.")
    if current is ReportStatus.preliminary and new is ReportStatus.registered:
        raise ReportNotFinal("A preliminary report cannot go back to registered.")


def _apply(
    session: Session,
    *,
    order: LabOrder,
    report: Report | None,
    data: ReportContent,
    reported_by: str,
    require_payment: bool,
    reason: str | None = None,
) -> tuple[Report, bool]:
    """Give the report `data`'s content (a new report when `report` is None, or a LIS's version-0
    placeholder); the report and whether anything changed. A repeat of the current content changes
    nothing and emits nothing. A verified final report becomes releasable (`note_releasable`)."""
    content = _content(data)
    now = utcnow()
    fresh = report is None or report.version == 0
    if report is not None and not fresh:
        if {field: getattr(report, field) for field in CONTENT_FIELDS} == content:
            return report, False
        _check_transition(ReportStatus(report.status), data.status)
        _keep_revision(session, report, reason=reason, now=now)
    else:
        _check_transition(None, data.status)
    if report is None:
        report = Report(
            id=str(uuid.uuid4()),
            order_id=order.id,
            visit_id=order.visit_id,
            patient_id=order.patient_id,
            test_code=order.test_code,
            test_name=order.test_name,
            reported_by="",
            status=data.status.value,
            conclusion="",
            version=0,
        )
    was_final = ReportStatus(report.status) in FINAL_STATUSES and not fresh
    if content["verified_by"] != report.verified_by or report.verified_at is None:
        report.verified_at = now if content["verified_by"] else None
    for field, value in content.items():
        setattr(report, field, value)
    report.version += 1
    report.reported_by = reported_by[:SUBJECT_MAX_LENGTH]
    report.reported_at = now
    session.add(report)
    _follow_order(session, order, data.status, now)
    note_releasable(report, order, require_payment=require_payment, now=now)
    session.flush()  # critical values and revisions refer to the report row
    if data.status is ReportStatus.preliminary:
        _record(session, order, "report.preliminary", {"report_id": report.id})
    elif data.status is ReportStatus.final:
        _record(session, order, "report.final", {"report_id": report.id})
    if was_final:
        _notify_readers(session, order, report)
    if data.status is not ReportStatus.cancelled:
        critical.raise_critical_values(session, order=order, report=report, data=data, now=now)
    return report, True


def _follow_order(session: Session, order: LabOrder, status: ReportStatus, now: datetime) -> None:
    """The order is `reported` while its report is final (its first final report's time kept for
    turnaround); a cancelled report puts it back to the lab."""
    if status in FINAL_STATUSES:
        order.status = OrderStatus.reported.value
        turnaround.note_reported(order, now)
    elif status is ReportStatus.cancelled and order.status == OrderStatus.reported:
        order.status = OrderStatus.released.value
    session.add(order)


def _keep_revision(session: Session, report: Report, *, reason: str | None, now: datetime) -> None:
    repository.add_revision(
        session,
        ReportRevision(
            report_id=report.id,
            version=report.version,
            status=report.status,
            conclusion=report.conclusion,
            observations=list(report.observations),
            critical=report.critical,
            verified_by=report.verified_by,
            reported_by=report.reported_by,
            reported_at=report.reported_at,
            replaced_at=now,
            reason=reason,
        ),
    )


def _notify_readers(session: Session, order: LabOrder, report: Report) -> None:
    """One `report.amended_notice` per reader of the earlier version (client, and patient acted for)."""
    for client, acting_for in repository.readers_of_report(session, report):
        payload = {
            "report_id": report.id,
            "status": report.status,
            "version": report.version,
            "reader_client": client,
            "reader_patient_id": acting_for,
        }
        _record(session, order, "report.amended_notice", payload)


def post_report(
    session: Session, *, order_id: str, data: ReportCreate, reported_by: str, require_payment: bool
) -> Report:
    """Post the order's report as registered, preliminary or final: the first post creates it, later
    ones move the same report forward; 402 while the order awaits payment, 409 once it is final.

    A cancelled report leaves the order to the lab again: the next post starts a new report.
    """
    order = get_order(session, order_id=order_id, for_update=True)
    ensure_lab_may_work(order)
    current = repository.current_report_of_order(session, order.id)
    if current is not None and current.status == ReportStatus.cancelled:
        current = None
    if current is not None and ReportStatus(current.status) in FINAL_STATUSES:
        raise ReportAlreadyFinal("This order already has a final report; no further report can be posted.")
    report, _ = _apply(
        session,
        order=order,
        report=current,
        data=data,
        reported_by=reported_by,
        require_payment=require_payment,
    )
    return report


def _locked_report(session: Session, report_id: str) -> tuple[Report, LabOrder]:
    """The report and its order, the order locked first (the order every report write locks in)."""
    found = repository.get_report(session, report_id)
    if found is None:
        raise ReportNotFound("No such report.")
    order = get_order(session, order_id=found.order_id, for_update=True)
    report = repository.get_report(session, report_id, for_update=True)
    assert report is not None  # reports are never deleted
    return report, order


def amend_report(
    session: Session, *, report_id: str, data: ReportAmendment, reported_by: str, require_payment: bool
) -> Report:
    """Amend or correct a final report (its whole new content); readers of the old one are notified.
    A report already released keeps its first `releasable_at`: the patient had it from then on."""
    report, order = _locked_report(session, report_id)
    if ReportStatus(report.status) not in FINAL_STATUSES:
        raise ReportNotFinal("Only a final report can be amended or corrected.")
    changed, _ = _apply(
        session,
        order=order,
        report=report,
        data=data,
        reported_by=reported_by,
        require_payment=require_payment,
        reason=data.reason,
    )
    return changed


def cancel_report(session: Session, *, report_id: str, data: ReportCancellation, cancelled_by: str) -> Report:
    """Cancel (作废) a report; its readers are notified when it had been final."""
    report, order = _locked_report(session, report_id)
    if report.status == ReportStatus.cancelled:
        raise ReportCancelled("This report is already cancelled.")
    observations = [Observation.model_validate(o) for o in report.observations]
    content = ReportContent(
        status=ReportStatus.cancelled, conclusion=report.conclusion, observations=observations
    )
    # A cancelled report is never releasable: the payment setting cannot matter.
    changed, _ = _apply(
        session,
        order=order,
        report=report,
        data=content,
        reported_by=cancelled_by,
        require_payment=False,
        reason=data.reason,
    )
    return changed


def verify_report(
    session: Session, *, report_id: str, data: ReportVerification, require_payment: bool
) -> Report:
    """Record the technician who verified (审核) a final report posted without one; it may now be
    releasable (`note_releasable`)."""
    report, order = _locked_report(session, report_id)
    if ReportStatus(report.status) not in FINAL_STATUSES:
        raise ReportNotFinal("Only a final, amended or corrected report is verified.")
    if report.verified_by is not None:
        raise ReportAlreadyVerified(f"This report was verified at {report.verified_at}.")
    report.verified_by, report.verified_at = data.verified_by, utcnow()
    note_releasable(report, order, require_payment=require_payment, now=report.verified_at)
    session.add(report)
    session.add(order)
    return report


def set_withheld(
    session: Session, *, report_id: str, withhold: bool, data: HoldAction, client: str, require_payment: bool
) -> Report:
    """A doctor withholds a report from the patient (暂缓发布), or lifts that; each action is kept.
    Lifting it may make the report releasable for the first time (`note_releasable`)."""
    report, order = _locked_report(session, report_id)
    if report.withheld == withhold:
        raise HoldUnchanged("The report is already withheld." if withhold else "The report is not withheld.")
    report.withheld = withhold
    session.add(report)
    action = ReportHoldAction(
        report_id=report.id,
        action="withhold" if withhold else "unwithhold",
        reason=data.reason,
        client=client[:SUBJECT_MAX_LENGTH],
    )
    repository.add_hold_action(session, action)
    note_releasable(report, order, require_payment=require_payment, now=action.at)
    session.add(order)
    return report


def require_lis_client(caller: Caller) -> None:
    """Only a LIS/PACS client (kind `lis`) names reports by its own ids."""
    if caller.kind != LIS_KIND:
        raise LisClientRequired("Only a LIS/PACS client (kind `lis`) posts reports by its own id.")


def intake_lis_report(
    session: Session, *, data: LisReport, caller: Caller, require_payment: bool
) -> tuple[Report, bool, bool]:
    """A LIS/PACS posts or updates its report, keyed by `(client, external_id)`: the report, whether it
    was created, and whether anything changed. A repeat changes nothing; two racing first posts make
    one report (`repository.ensure_external_report`)."""
    require_lis_client(caller)
    order = get_order(session, order_id=data.order_id, for_update=True)
    ensure_lab_may_work(order)
    source_client = caller.subject[:SUBJECT_MAX_LENGTH]
    placeholder = {
        "id": str(uuid.uuid4()),
        "order_id": order.id,
        "visit_id": order.visit_id,
        "patient_id": order.patient_id,
        "test_code": order.test_code,
        "test_name": order.test_name,
        "status": ReportStatus.registered.value,
        "conclusion": "",
        "observations": [],
        "critical": False,
        "reported_by": source_client,
        "reported_at": utcnow(),
        "withheld": False,
        "version": 0,
        "source_client": source_client,
        "external_id": data.external_id,
    }
    current = repository.current_report_of_order(session, order.id)
    if (
        current is not None
        and current.status != ReportStatus.cancelled
        and ((current.source_client, current.external_id) != (source_client, data.external_id))
    ):
        raise ExternalReportConflict("This order already has a report from elsewhere.")
    report = repository.ensure_external_report(session, placeholder)
    if report.order_id != order.id:
        raise ExternalReportConflict("This external id names a report of another order.")
    created = report.version == 0
    report, changed = _apply(
        session,
        order=order,
        report=report,
        data=data,
        reported_by=source_client,
        require_payment=require_payment,
        reason=data.reason,
    )
    return report, created, changed
