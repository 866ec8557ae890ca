"""Results rules: the payment gate on orders, when a report may be posted, and audited result lookup."""

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlmodel import Session

from kit.auth import visible_to
from kit.client import ServiceClient
from kit.clock import utcnow
from kit.outbox import record_event
from kit.requestid import current_request_id
from services.results import audit, repository
from services.results.errors import (
    OrderAwaitingPayment,
    OrderNotFound,
    ReportAlreadyFinal,
    UnknownTest,
    VisitClosed,
    VisitNotFound,
)
from services.results.models import LabOrder, OrderableTest, OutboxEvent, Report, ResultAccess
from services.results.schemas import (
    OrderableTestPublic,
    OrderCreate,
    OrderPublic,
    OrderStatus,
    PaymentMode,
    RegistrationVisit,
    ReportCreate,
    ReportPublic,
    ReportStatus,
)

SEED_FILE = Path(__file__).parent / "tests.json"
SUBJECT_MAX_LENGTH = 64


def load_orderable_tests(session: Session, *, seed_file: Path = SEED_FILE) -> None:
    """Upsert the orderable tests from the seed file (run at every start, so edits to it take effect).

    The seed is validated first: a malformed file stops start-up rather than serving a broken catalogue.
    """
    seed = json.loads(seed_file.read_text(encoding="utf-8"))
    tests = [OrderableTestPublic.model_validate(entry).model_dump(mode="json") for entry in seed]
    repository.upsert_orderable_tests(session, tests)


def list_orderable_tests(session: Session) -> list[OrderableTest]:
    return repository.list_orderable_tests(session)


# Registration's status of a visit that takes no new work (settled, discharged, closed).
CLOSED = "closed"


async def fetch_visit(registration: ServiceClient, *, visit_id: str) -> RegistrationVisit:
    """The visit as registration knows it; the order's patient and payment mode come from here only.

    Awaited before the unit of work opens (`router.resolve_visit`), so no transaction waits on it.
    """
    visit = await registration.get(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    if visit.status == CLOSED:
        raise VisitClosed(f"Visit {visit.id} is closed; it takes no new work.", visit_id=visit.id)
    return visit


def _record(session: Session, order: LabOrder, event_type: str, payload: dict[str, Any]) -> None:
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="order",
        aggregate_id=order.id,
        visit_id=order.visit_id,
        patient_id=order.patient_id,
        payload={"order_id": order.id, "test_code": order.test_code, **payload},
    )


def place_order(session: Session, *, visit: RegistrationVisit, data: OrderCreate) -> LabOrder:
    """Order a test; a `prepay` visit's order waits for payment, the other modes release it at once.

    先诊疗后结算 (settle later) and 绿色通道 (green channel) never make the lab wait for the cashier.
    """
    patient_id = repository.patient_for_visit(session, visit_id=visit.id, registered=visit.patient_id)
    test = repository.get_orderable_test(session, data.test_code)
    if test is None:
        raise UnknownTest(f"No orderable test with code {data.test_code!r}; see GET /tests.")
    released = visit.payment_mode is not PaymentMode.prepay
    order = LabOrder(
        id=str(uuid.uuid4()),
        visit_id=visit.id,
        patient_id=patient_id,
        test_code=test.code,
        test_name=test.name_zh,
        payment_mode=visit.payment_mode.value,
        status=(OrderStatus.released if released else OrderStatus.awaiting_payment).value,
        ordered_by=data.ordered_by,
    )
    order.released_at = order.ordered_at if released else None
    session.add(order)
    payload = {"quantity": 1, "payment_mode": order.payment_mode, "status": order.status}
    _record(session, order, "order.placed", payload)
    if released:
        _record(session, order, "order.released", {"reason": "payment_mode"})
    return order


def get_order(
    session: Session, *, order_id: str, for_update: bool = False, acting_for: str | None = None
) -> LabOrder:
    """The order; acting for another patient, 404 exactly as for one that does not exist."""
    order = repository.get_order(session, order_id, for_update=for_update)
    if order is None or not visible_to(acting_for, order.patient_id):
        raise OrderNotFound("No such order.")
    return order


def post_report(session: Session, *, order_id: str, data: ReportCreate, reported_by: str) -> Report:
    """Post a preliminary or final report; only on a released order, and nothing after the final one.

    A critical report (危急值) also raises `report.critical`, preliminary or final, in the same transaction.
    """
    order = get_order(session, order_id=order_id, for_update=True)
    if order.status == OrderStatus.awaiting_payment:
        raise OrderAwaitingPayment("This order is awaiting payment; the lab cannot start it until paid.")
    if order.status == OrderStatus.reported:
        raise ReportAlreadyFinal("This order already has a final report; no further report can be posted.")
    report = Report(
        id=str(uuid.uuid4()),
        order_id=order.id,
        visit_id=order.visit_id,
        patient_id=order.patient_id,
        test_code=order.test_code,
        test_name=order.test_name,
        status=data.status.value,
        conclusion=data.conclusion,
        observations=[o.model_dump(mode="json") for o in data.observations],
        critical=data.is_critical,
        critical_note=data.critical_note,
        reported_by=reported_by[:SUBJECT_MAX_LENGTH],
    )
    session.add(report)
    final = data.status is ReportStatus.final
    if final:
        order.status = OrderStatus.reported.value
        session.add(order)
    # Event types are literals at every call site: tests/test_event_schemas.py finds them there.
    _record(session, order, "report.final" if final else "report.preliminary", {"report_id": report.id})
    if report.critical:
        # The note stays out of the event: events carry references, and a note may name people.
        _record(session, order, "report.critical", {"report_id": report.id})
    return report


def _audit(
    session: Session,
    *,
    client: str,
    acting_for: str | None,
    action: str,
    outcome: str,
    reports: Sequence[Report],
    patient_id: str | None = None,
    visit_id: str | None = None,
    report_id: str | None = None,
) -> None:
    """Record a look at results in the lookup's own transaction: no audit row, no answer.

    The client's kind and where the request came from are the request's own (`audit.note_origin`).
    """
    origin = audit.current_origin()
    session.add(
        ResultAccess(
            client=client[:SUBJECT_MAX_LENGTH],
            action=action,
            patient_id=patient_id,
            visit_id=visit_id,
            report_id=report_id,
            report_ids=[r.id for r in reports],
            outcome=outcome,
            request_id=current_request_id(),
            acting_for=acting_for,
            client_kind=origin.client_kind,
            source_address=origin.source_address,
        )
    )


def visit_orders(session: Session, *, visit_id: str, acting_for: str | None = None) -> list[LabOrder]:
    """A visit's orders, oldest first; acting for another patient, empty as for a visit without any."""
    orders = repository.list_visit_orders(session, visit_id)
    return orders if all(visible_to(acting_for, o.patient_id) for o in orders) else []


def visit_reports(
    session: Session, *, visit_id: str, client: str, limit: int, acting_for: str | None = None
) -> list[Report]:
    """A visit's reports, newest first, audited (an empty answer too).

    Acting for another patient the answer is empty, as for a visit without reports, and the audit
    says `refused`: the row records what the client got, not what the database holds.
    """
    reports = repository.list_visit_reports(session, visit_id, limit=limit)
    patient_id = reports[0].patient_id if reports else repository.patient_of_visit(session, visit_id)
    refused = patient_id is not None and not visible_to(acting_for, patient_id)
    outcome = "refused" if refused else "found" if reports else "empty"
    shown = [] if refused else reports
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="visit_reports",
        outcome=outcome,
        reports=shown,
        patient_id=patient_id,
        visit_id=visit_id,
    )
    return shown


def patient_reports(
    session: Session, *, patient_id: str, client: str, limit: int, acting_for: str | None = None
) -> list[Report]:
    """A patient's reports, newest first, audited (an empty answer too); acting for another patient,
    empty and audited as `refused`."""
    refused = not visible_to(acting_for, patient_id)
    reports = [] if refused else repository.list_patient_reports(session, patient_id, limit=limit)
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="patient_reports",
        outcome="refused" if refused else "found" if reports else "empty",
        reports=reports,
        patient_id=patient_id,
    )
    return reports


def read_report(
    session: Session, *, report_id: str, patient_id: str | None, client: str, acting_for: str | None = None
) -> Report | None:
    """One report, audited; None (never a hint why) when it does not exist or is not that patient's
    (`patient_id` asked for, or the patient the caller acts for). The audit row tells the two apart:
    `not_found`, or `refused` naming whose report it was."""
    report = repository.get_report(session, report_id)
    refused = report is not None and not (
        visible_to(patient_id, report.patient_id) and visible_to(acting_for, report.patient_id)
    )
    shown = None if refused else report
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="read_report",
        outcome="refused" if refused else "found" if report else "not_found",
        reports=[shown] if shown else [],
        patient_id=report.patient_id if report else patient_id or acting_for,
        visit_id=report.visit_id if report else None,
        report_id=report_id,
    )
    return shown


def release_paid(session: Session, order: LabOrder) -> None:
    """A prepaid order the cashier has been paid for goes to the lab."""
    order.status = OrderStatus.released.value
    order.released_at = utcnow()
    session.add(order)
    _record(session, order, "order.released", {"reason": "paid"})


def order_public(order: LabOrder) -> OrderPublic:
    return OrderPublic.model_validate(order, from_attributes=True)


def report_public(report: Report) -> ReportPublic:
    return ReportPublic.model_validate(report, from_attributes=True)
